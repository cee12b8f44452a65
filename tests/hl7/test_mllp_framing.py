"""The sans-I/O MLLP decoder: frames in any pieces, junk, oversize frames."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from medhub.hl7.mllp_framing import HEAD_KEPT, FramingProblem, MllpDecoder, encode_frame

VT, FS, CR = b"\x0b", b"\x1c", b"\r"
A = b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|MSG-A|P|2.5.1\rPID|1||1\r"
B = b"MSH|^~\\&|A|B|C|D|20240101||ADT^A08|MSG-B|P|2.5.1\rPID|1||2\r"


def feed_all(decoder: MllpDecoder, pieces: list[bytes]) -> list[bytes | FramingProblem]:
    out: list[bytes | FramingProblem] = []
    for piece in pieces:
        out.extend(decoder.feed(piece))
    return out


def test_encode_frame_wraps_the_message_in_vt_fs_cr() -> None:
    assert encode_frame(A) == VT + A + FS + CR
    assert encode_frame(b"") == b"\x0b\x1c\r"


def test_a_whole_frame_gives_its_message() -> None:
    decoder = MllpDecoder()
    assert decoder.feed(encode_frame(A)) == [A]
    assert decoder.pending_bytes == 0
    assert not decoder.in_frame


def test_several_frames_in_one_chunk_come_out_in_order() -> None:
    decoder = MllpDecoder()
    assert decoder.feed(encode_frame(A) + encode_frame(B) + encode_frame(A)) == [A, B, A]


def test_an_empty_frame_gives_an_empty_message() -> None:
    assert MllpDecoder().feed(encode_frame(b"") + encode_frame(A)) == [b"", A]


def test_a_frame_split_at_every_byte_boundary_is_decoded() -> None:
    wire = encode_frame(A) + encode_frame(B)
    for cut in range(len(wire) + 1):
        decoder = MllpDecoder()
        assert feed_all(decoder, [wire[:cut], wire[cut:]]) == [A, B], cut
        assert decoder.pending_bytes == 0 and not decoder.in_frame


def test_a_frame_fed_one_byte_at_a_time_is_decoded() -> None:
    wire = encode_frame(A)
    decoder = MllpDecoder()
    results = [decoder.feed(wire[i : i + 1]) for i in range(len(wire))]
    assert [r for r in results if r] == [[A]]
    assert results[len(wire) - 2] == [A]  # complete as soon as FS arrives


def test_fs_and_cr_split_across_chunks_leave_no_junk() -> None:
    decoder = MllpDecoder()
    assert decoder.feed(VT + A + FS) == [A]
    assert decoder.feed(CR) == []
    assert decoder.feed(encode_frame(B)) == [B]  # the late CR is not reported as junk


def test_an_fs_without_cr_still_ends_the_frame() -> None:
    assert MllpDecoder().feed(VT + A + FS + VT + B + FS + CR) == [A, B]


def test_junk_before_a_frame_is_reported_with_its_size() -> None:
    decoder = MllpDecoder()
    assert decoder.feed(b"HELLO" + encode_frame(A)) == [FramingProblem("junk", 5), A]


def test_junk_between_frames_is_reported_between_the_messages() -> None:
    decoder = MllpDecoder()
    out = decoder.feed(encode_frame(A) + b"xyz" + encode_frame(B))
    assert out == [A, FramingProblem("junk", 3), B]


def test_junk_spread_over_chunks_is_reported_once_when_the_next_frame_starts() -> None:
    decoder = MllpDecoder()
    assert decoder.feed(b"ab") == []
    assert decoder.feed(b"cd") == []
    assert decoder.feed(encode_frame(A)) == [FramingProblem("junk", 4), A]


def test_line_ends_and_blanks_between_frames_are_not_junk() -> None:
    decoder = MllpDecoder()
    wire = encode_frame(A) + b"\r\n" + b"\n\r \t" + encode_frame(B) + b"\r\n"
    assert decoder.feed(wire) == [A, B]
    assert decoder.feed(b"\r\n\r\n" + encode_frame(A)) == [A]


def test_bytes_inside_a_frame_are_never_junk() -> None:
    message = b"MSH|^~\\&|\x00binary\x0bstill inside\r\n"
    assert MllpDecoder().feed(encode_frame(message)) == [message]


def test_mid_frame_state_is_visible() -> None:
    decoder = MllpDecoder()
    assert decoder.feed(VT + A[:10]) == []
    assert decoder.in_frame
    assert decoder.pending_bytes == 10
    assert decoder.feed(A[10:25]) == []
    assert decoder.pending_bytes == 25
    assert decoder.feed(A[25:] + FS + CR) == [A]
    assert not decoder.in_frame
    assert decoder.pending_bytes == 0


def test_junk_outside_a_frame_is_not_pending_frame_data() -> None:
    decoder = MllpDecoder()
    assert decoder.feed(b"junk") == []
    assert not decoder.in_frame
    assert decoder.pending_bytes == 0


def test_an_oversize_frame_is_reported_with_its_head_and_the_next_frame_is_decoded() -> None:
    big = A + b"OBX|1|ED|||" + b"x" * 10_000 + b"\r"
    decoder = MllpDecoder(max_frame_bytes=5_000)
    out = decoder.feed(encode_frame(big) + encode_frame(B))
    assert out == [FramingProblem("oversize", len(big), big[:HEAD_KEPT]), B]
    problem = out[0]
    assert isinstance(problem, FramingProblem) and b"MSG-A" in problem.head  # MSH-10 kept


def test_an_oversize_frame_in_small_chunks_keeps_its_head_and_counts_its_size() -> None:
    big = A + b"y" * 20_000
    wire = encode_frame(big) + encode_frame(B)
    for size in (1, 7, 1000, 4096, 6000):
        decoder = MllpDecoder(max_frame_bytes=5_000)
        out = feed_all(decoder, [wire[i : i + size] for i in range(0, len(wire), size)])
        assert out == [FramingProblem("oversize", len(big), big[:HEAD_KEPT]), B], size
        assert decoder.pending_bytes == 0 and not decoder.in_frame


def test_a_frame_exactly_at_the_limit_is_accepted() -> None:
    decoder = MllpDecoder(max_frame_bytes=len(A))
    assert decoder.feed(encode_frame(A) + encode_frame(A + b"!")) == [
        A,
        FramingProblem("oversize", len(A) + 1, A + b"!"),
    ]


def test_an_oversize_frame_is_still_pending_until_its_end() -> None:
    decoder = MllpDecoder(max_frame_bytes=5_000)
    assert decoder.feed(VT + b"z" * 6_000) == []
    assert decoder.in_frame
    assert decoder.pending_bytes > 0
    assert decoder.feed(FS + CR) == [FramingProblem("oversize", 6_000, b"z" * HEAD_KEPT)]
    assert not decoder.in_frame


def test_pending_bytes_of_an_oversize_frame_counts_each_byte_once() -> None:
    decoder = MllpDecoder(max_frame_bytes=10)
    assert decoder.feed(VT + b"x" * 20) == []
    assert decoder.pending_bytes == 20


# -- property --------------------------------------------------------------------------------

MESSAGES = st.lists(
    st.binary(max_size=300).map(lambda m: m.replace(VT, b"").replace(FS, b"")), max_size=8
)


@settings(max_examples=300)
@given(messages=MESSAGES, data=st.data())
def test_any_messages_in_any_chunking_come_out_identical_and_in_order(
    messages: list[bytes], data: st.DataObject
) -> None:
    wire = b"".join(encode_frame(m) for m in messages)
    cuts = sorted(data.draw(st.sets(st.integers(0, len(wire)), max_size=20), label="cuts"))
    bounds = [0, *cuts, len(wire)]
    pieces = [wire[start:end] for start, end in itertools.pairwise(bounds)]
    decoder = MllpDecoder()
    assert feed_all(decoder, pieces) == messages
    assert decoder.pending_bytes == 0
    assert not decoder.in_frame
