"""validate(quick=True) end to end: well-formed records, matching hashes, and the claims hold."""

import json

import pytest

from sbi_dmri.validation import check_record, validate


def test_validate_quick_writes_wellformed_passing_records(tmp_path):
    records = validate(quick=True, out_dir=tmp_path)
    ids = {r["id"] for r in records}
    assert {"mc-free-diffusion", "mc-misst-cylinder-delta1", "gpd-cylinder-vs-mc", "mc-permeable-slab",
            "mc-step-convergence", "mc-mitra-sphere"} <= ids
    for rec in records:
        on_disk = json.loads((tmp_path / f"{rec['id']}.json").read_text())
        check_record(on_disk)  # every field present, hash matches content
        assert set(on_disk["dependencies"]) <= ids
        assert on_disk["passed"], on_disk["id"]
    assert (tmp_path / "gpd-cylinder-departure.png").stat().st_size > 1000
    index = json.loads((tmp_path / "index.json").read_text())
    assert len(index["records"]) == len(records)


def test_tampered_record_fails_hash_check(tmp_path):
    from sbi_dmri.validation.compendium import make_record

    rec = make_record(id="x", claim="c", model="m", kernel=None, assumptions=[], scope={}, evidence={"e": 1.0},
                      passed=True)
    check_record(rec)
    rec["evidence"]["e"] = 2.0
    try:
        check_record(rec)
    except ValueError as err:
        assert "hash" in str(err)
    else:
        raise AssertionError("tampering went unnoticed")


@pytest.mark.slow
def test_karger_matches_permeable_packed_cylinders_in_its_regime(tmp_path):
    from sbi_dmri.validation.validate import karger_records

    (rec,) = karger_records(10000, 0, tmp_path)
    check_record(rec)
    assert rec["passed"], rec["evidence"]["rows"]
