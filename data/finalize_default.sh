#!/usr/bin/env bash
# Rebuild the corpus, retrain the bundled default model and refresh the generated docs.
#   bash data/finalize_default.sh          (about 10-15 minutes on 2 CPU cores)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
$PY data/build_corpus.py
$PY -m diplotag data check data/corpus.jsonl --schema configs/labels.yaml
rm -rf runs/default
$PY -m diplotag train configs/default.yaml --output runs/default
rm -rf model/default
mkdir -p model/default/report
cp runs/default/model/* model/default/
cp runs/default/report/test/report.md runs/default/report/test/*.png model/default/report/
$PY data/corpus_stats.py --update docs/data-card.md
$PY -m diplotag info --json > /dev/null
du -sb model/default
