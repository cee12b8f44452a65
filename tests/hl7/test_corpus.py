"""Every real-shaped message in the shared corpus is parsed and acknowledged AA.

Each file goes to its own fresh database: several corpus files reuse one
MSH-10 from one sender for different content, which a live interface rightly
answers AE (see test_inbound); here the question is whether each message on
its own is understood.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from medhub.db.engine import make_engine
from medhub.fhir.sql_store import SqlResourceStore
from medhub.hl7.batch import split_batch
from medhub.hl7.dispatch import applier_for
from medhub.hl7.er7 import decode_er7, parse_er7
from medhub.hl7.inbound import Hl7Inbound
from medhub.hl7.sql_units import sql_inbound_units
from medhub.migrations import upgrade

#: Corpus messages that are refused AE on purpose, with the ERR-2 location the answer names.
#: Each is broken in a way that would otherwise attach data to nothing or to the wrong order.
EXPECTED_AE = {
    "ORU-R01-01.hl7": "OBX^2^3",  # an ED result with no OBX-3: nothing says what it observes
    "OML-O21-03.hl7": "ORC^1^2",  # ORC|SC with neither placer nor filler number: no order
    "MDHHS-OML-O21-1.hl7": "OBR^1",  # a lost segment end glues ORC onto GT1: OBR without ORC
}

CORPUS_FILES = sorted(
    (Path(__file__).resolve().parents[3] / "shared" / "corpus" / "hl7").glob("*.hl7")
)


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "medhub.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


def test_the_corpus_is_there() -> None:
    assert len(CORPUS_FILES) >= 80


@pytest.mark.parametrize("path", CORPUS_FILES, ids=[p.name for p in CORPUS_FILES])
def test_each_corpus_message_is_acknowledged(path: Path, template_db: Path, tmp_path: Path) -> None:
    database = tmp_path / "medhub.db"
    shutil.copy(template_db, database)
    engine = make_engine(f"sqlite:///{database}")
    inbound = Hl7Inbound(
        sql_inbound_units(SqlResourceStore(engine)), clock=lambda: datetime.now(UTC)
    )
    messages = split_batch(path.read_bytes()).messages
    assert messages
    try:
        for raw in messages:
            outcome = inbound.handle(raw, "corpus")
            if path.name in EXPECTED_AE:
                assert (outcome.status, outcome.ack_code) == ("dead-letter", "AE")
                assert outcome.ack is not None
                err = parse_er7(outcome.ack.decode()).segment("ERR")
                assert err is not None and err.raw(2) == EXPECTED_AE[path.name]
                continue
            assert outcome.ack_code == "AA", outcome.error
            mapped = applier_for(parse_er7(decode_er7(raw))) is not None
            assert outcome.status == ("accepted" if mapped else "stored")
    finally:
        engine.dispose()
