"""Check one corpus part file written by hand: python3 data/raw/validate_part.py FILE [--words MIN-MAX]
(the word range defaults to 8-80; the part of short quotes and fragments uses --words 2-12)"""
import json, re, sys, collections
WORDS = (sys.argv + [""])[sys.argv.index("--words") + 1] if "--words" in sys.argv else "8-80"
if not re.fullmatch(r"\d+-\d+", WORDS): sys.exit(f"--words must be MIN-MAX, e.g. 2-12 (got {WORDS!r})")
LO, HI = (int(x) for x in WORDS.split("-"))
KEYS = ["id","text","target","stance","tone","speaker","speaker_type","country_or_org","topic","group","phenomena","reported"]
ST = {"support","oppose","neutral"}; TO = {"cooperative","neutral","concerned","critical","hostile"}
SPK = set("head_of_state head_of_government foreign_minister ministry_spokesperson ambassador defence_ministry un_official regional_org_official opposition_leader minister_other legislator military_official news_report".split())
TOP = set("armed_conflict ceasefire peace_talks sanctions trade climate nuclear human_rights elections migration humanitarian_aid cyber maritime_dispute border_dispute terrorism health energy space arms_control diplomatic_relations development technology".split())
PH = set("polite_criticism negation hedged_support conditional veiled_threat attack_on_peace_process both_sides_restraint reported_speech event_report irony key_clause_last mixed_signals contrastive".split())
errors = 0; ids = set(); c = collections.Counter(); groups = collections.defaultdict(set)
for n, line in enumerate(open(sys.argv[1], encoding="utf-8"), 1):
    def err(msg):
        global errors; errors += 1; print(f"line {n}: {msg}")
    if not line.strip(): err("blank line"); continue
    try: r = json.loads(line)
    except Exception as e: err(f"bad JSON: {e}"); continue
    if list(r) != KEYS: err(f"keys must be exactly {KEYS}, got {list(r)}"); continue
    if r["id"] in ids: err(f"duplicate id {r['id']}")
    ids.add(r["id"])
    w = len(r["text"].split())
    if not LO <= w <= HI: err(f"{w} words (need {LO}-{HI})")
    if r["stance"] not in ST: err(f"stance {r['stance']!r}")
    if r["tone"] not in TO: err(f"tone {r['tone']!r}")
    if r["speaker_type"] not in SPK: err(f"speaker_type {r['speaker_type']!r}")
    if r["topic"] not in TOP: err(f"topic {r['topic']!r}")
    if not isinstance(r["phenomena"], list) or set(r["phenomena"]) - PH: err(f"phenomena {r['phenomena']!r}")
    if not isinstance(r["reported"], bool): err("reported must be true/false")
    if r["target"] is not None and (not isinstance(r["target"], str) or not r["target"].strip()): err("target must be null or non-empty string")
    if r["group"]: groups[r["group"]].add((r["text"], r["tone"]))
    c["stance:" + r["stance"]] += 1; c["tone:" + r["tone"]] += 1; c["target" if r["target"] else "no_target"] += 1
    c["reported"] += r["reported"]; c["hard"] += bool(set(r["phenomena"]) - {"reported_speech", "event_report", "contrastive"})
for g, v in groups.items():
    if len(v) != 1: errors += 1; print(f"group {g}: rows must share identical text and tone")
total = len(ids)
print(f"{total} items, {errors} errors")
for k in sorted(c): print(f"  {k}: {c[k]} ({100*c[k]/max(total,1):.0f}%)")
sys.exit(1 if errors else 0)
