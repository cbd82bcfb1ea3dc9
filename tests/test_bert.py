"""diplotag's own BERT computes what transformers' BertModel computes, from the same weights."""

import torch
from transformers import BertConfig as HFBertConfig
from transformers import BertModel

from diplotag.model.base_encoder import load_encoder_folder
from diplotag.model.bert import BertConfig, BertEncoder
from tests.conftest import TINY_BERT


def test_same_hidden_states_as_transformers(tiny_encoder_dir):
    hf = BertModel.from_pretrained(str(tiny_encoder_dir), add_pooling_layer=False).eval()
    ours = load_encoder_folder(tiny_encoder_dir).eval()
    ids = torch.randint(100, 3000, (3, 17))
    mask = torch.ones_like(ids)
    mask[1, 11:] = 0
    mask[2, 4:] = 0
    types = torch.zeros_like(ids)
    types[:, 6:] = 1
    with torch.no_grad():
        a = ours(ids, mask, types)
        b = hf(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
    real = mask.bool()
    assert torch.allclose(a[real], b[real], atol=1e-5)


def test_parameter_names_match_transformers():
    hf = BertModel(HFBertConfig(**TINY_BERT), add_pooling_layer=False)
    ours = BertEncoder(BertConfig.from_dict(HFBertConfig(**TINY_BERT).to_dict()))
    hf_names = {k for k in hf.state_dict() if not k.endswith("position_ids")}
    assert set(ours.state_dict()) == hf_names
