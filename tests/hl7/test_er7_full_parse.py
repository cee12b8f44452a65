"""The one-pass full decode agrees with the lazy per-field decode, on any message."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from medhub.hl7.batch import split_batch
from medhub.hl7.er7 import decode_er7, parse_er7

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"

_text = st.text(alphabet="AB12 .-^~&\\FSTREX", max_size=12)
_segment = st.builds(
    lambda name, fields: name + "|" + "|".join(fields),
    st.sampled_from(["PID", "OBX", "ZX1", "NTE"]),
    st.lists(_text, max_size=8),
)


def lazy_tree(text: str) -> list[tuple[str, list[object]]]:
    message = parse_er7(text)
    return [(s.name, [s.tree(n) for n in range(1, len(s.fields))]) for s in message.segments]


@settings(max_examples=300)
@given(st.lists(_segment, max_size=5), _text)
def test_decode_all_equals_field_by_field_decoding(segments: list[str], control: str) -> None:
    text = "\r".join([f"MSH|^~\\&|A|B|C|D|1||ADT^A01|X{control}|P|2.5.1", *segments])
    assert parse_er7(text).decode_all() == lazy_tree(text)


def test_decode_all_on_the_corpus_matches_and_reads_values() -> None:
    for path in sorted((CORPUS / "hl7").glob("*.hl7")) + [CORPUS / "bench" / "oru_pcd01_7seg.hl7"]:
        for raw in split_batch(path.read_bytes()).messages:
            text = decode_er7(raw)
            full = parse_er7(text)
            assert full.decode_all() == lazy_tree(text), path.name
    bench = parse_er7(decode_er7((CORPUS / "bench" / "oru_pcd01_7seg.hl7").read_bytes()))
    bench.decode_all()
    assert bench.get("OBX(2)-3.2") == "MDC_ECG_HEART_RATE"
    assert bench.get("OBX(1)-18.4") == "ICU"
