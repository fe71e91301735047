"""`wacrypto vectors generate` / `vectors check` as an implementer meets them: the same files on every
run, every file valid against the shipped JSON Schema with its provenance, every family the issue
names present with valid and invalid cases, and a checker that passes wacrypto and fails a wrong
vector."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from wacrypto.media import MediaType
from wacrypto.testing.chatd_process import cli_env, wacrypto_cmd
from wacrypto.tools.cli import main
from wacrypto.tools.vectors import FAMILIES, generate

SEED = "wacrypto-vectors-1"


@pytest.fixture(scope="module")
def suite_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("vectors")
    assert main(["vectors", "generate", str(d)]) == 0
    return d


def _load(d: Path) -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(d.glob("*.json"))}


def _cases(data: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(g, t) for g in data["testGroups"] for t in g["tests"]]


def test_generate_twice_gives_identical_files(suite_dir: Path, tmp_path: Path) -> None:
    generate(tmp_path / "again")
    first = {p.name: p.read_bytes() for p in suite_dir.iterdir()}
    second = {p.name: p.read_bytes() for p in (tmp_path / "again").iterdir()}
    assert first.keys() == {f"{f}.json" for f in FAMILIES} | {"schema.json", "README.md"}
    readme = first["README.md"].decode()
    for fam in FAMILIES:
        assert f"| `{fam}.json` |" in readme
    assert first == second
    generate(tmp_path / "other", seed="another seed", families=("xeddsa",))
    assert (tmp_path / "other" / "xeddsa.json").read_bytes() != first["xeddsa.json"]


def test_every_file_validates_against_the_schema_and_carries_provenance(suite_dir: Path) -> None:
    files = _load(suite_dir)
    schema = files.pop("schema")
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for fam, data in files.items():
        errors = [e.message for e in validator.iter_errors(data)]
        assert not errors, (fam, errors[:3])
        assert data["family"] == fam and data["provenance"]["seed"] == SEED
        assert "wacrypto" in data["provenance"]["generator"] and data["provenance"]["how"]
        ids = [t["tcId"] for _, t in _cases(data)]
        assert ids == list(range(1, len(ids) + 1)) and data["numberOfTests"] == len(ids)
        used = {fl for _, t in _cases(data) for fl in t["flags"]}
        assert used <= set(data["notes"]), (fam, used - set(data["notes"]))
        results = {t["result"] for _, t in _cases(data)}
        expected = {"fingerprint": {"valid"}, "ratchet": {"valid"}, "invalid_messages": {"invalid"}}.get(fam, {"valid", "invalid"})
        assert expected <= results, (fam, results)


def test_the_schema_refuses_a_case_without_result(suite_dir: Path) -> None:
    files = _load(suite_dir)
    data = files["xeddsa"]
    del data["testGroups"][0]["tests"][0]["result"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, files["schema"])


def test_the_suite_covers_what_implementers_need(suite_dir: Path) -> None:
    files = _load(suite_dir)

    def flags(fam: str) -> set[str]:
        return {fl for _, t in _cases(files[fam]) for fl in t["flags"]}

    def types(fam: str) -> set[str]:
        return {g["type"] for g in files[fam]["testGroups"]}

    assert {"XEdDSASign", "XEdDSAVerify"} <= types("xeddsa")
    assert all("random" in t for g, t in _cases(files["xeddsa"]) if g["type"] == "XEdDSASign")
    assert {"OneTimePreKey", "NoOneTimePreKey", "BadBundleSignature", "IdentityChange", "PreKeyReuse"} <= flags("x3dh")
    agreement = [t for g, t in _cases(files["x3dh"]) if g["type"] == "X3DHKeyAgreement"]
    assert [("dh4_ek_a_opk_b" in t) for t in agreement] == [True, False]
    assert all(len(bytes.fromhex(t["master_secret"])) == 32 * (5 if "dh4_ek_a_opk_b" in t else 4) for t in agreement)
    assert {"OutOfOrder", "SkippedKeys", "PreviousChain", "ArchivedSession", "RatchetStep", "ForwardJump"} <= flags("ratchet")
    assert {"BadMac", "TamperedCiphertext", "Truncated", "BadVersion", "BadKeyType", "WrongType", "Duplicate",
            "SkippedKeyReplay", "TooFarAhead", "NoSession", "Garbage", "StateSafety"} <= flags("invalid_messages")
    # every invalid-message case ends with a valid probe message, except "no session at all"
    for _, t in _cases(files["invalid_messages"]):
        assert any(s["expect"] == "reject" for s in t["steps"])
        assert t["steps"][-1].get("probe") or "NoSession" in t["flags"], t["comment"]
    assert {"BadSignature", "Duplicate", "NoSenderKey", "OutOfOrder"} <= flags("sender_keys")
    assert "Published" in flags("fingerprint")
    media_types = {t["media_type"] for g, t in _cases(files["media"]) if g["type"] == "MediaDecrypt" and t["result"] == "valid"}
    assert media_types == {m.value for m in MediaType}
    assert {"Sidecar", "TamperedMac", "BadPadding", "WrongMediaType", "TamperedSidecarChunk"} <= flags("media")
    assert {"NoiseHandshake", "NoiseHandshakeInvalid", "NoiseTransport", "Framing"} <= types("noise")
    assert {"StanzaEncode", "StanzaDecode"} <= types("binary") and "Compressed" in flags("binary")


def test_check_in_process_passes_every_case(suite_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vectors", "check", str(suite_dir)]) == 0
    out = capsys.readouterr().out
    total = sum(json.loads(p.read_text())["numberOfTests"] for p in suite_dir.glob("*.json") if p.name != "schema.json")
    assert f"| total            | {total:5d} | {total:4d} |    0 |           0 |" in out, out
    for fam in FAMILIES:
        assert f"| {fam} " in out


def _edit(src: Path, dst: Path, family: str, change: Any) -> None:
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    data = json.loads((dst / f"{family}.json").read_text())
    change(data)
    (dst / f"{family}.json").write_text(json.dumps(data))


@pytest.mark.parametrize("family, change, tc_id", [
    ("ratchet", lambda d: d["testGroups"][0]["tests"][0]["steps"][1].update(plaintext="00"), 1),
    ("xeddsa", lambda d: d["testGroups"][1]["tests"][1].update(result="valid"), None),
    ("media", lambda d: d["testGroups"][0]["tests"][0].update(plaintext="ff"), 1),
    ("noise", lambda d: d["testGroups"][0]["tests"][0].update(handshake_hash="00" * 32), 1),
    ("binary", lambda d: d["testGroups"][0]["tests"][0].update(stanza="00f8"), 1),
])
def test_check_fails_a_wrong_vector(suite_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    family: str, change: Any, tc_id: int | None) -> None:
    _edit(suite_dir, tmp_path / "bad", family, change)
    assert main(["vectors", "check", "-v", "--family", family, str(tmp_path / "bad")]) == 1
    out = capsys.readouterr().out
    assert f"FAIL {family} tcId" in out
    if tc_id is not None:
        assert f"FAIL {family} tcId {tc_id}:" in out
    assert main(["vectors", "check", "--json", str(tmp_path / "r.json"), "--family", family, str(tmp_path / "bad")]) == 1
    (row,) = json.loads((tmp_path / "r.json").read_text())["families"]
    assert row["family"] == family and row["fail"] == len(row["failures"]) >= 1 and row["pass"] == row["cases"] - row["fail"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(wacrypto_cmd(*args), capture_output=True, text=True, env=cli_env(),
                          stdin=subprocess.DEVNULL, timeout=120)


def test_cli_errors_are_one_line_with_exit_codes(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "empty").mkdir()
    cases = [
        (("vectors", "generate", str(tmp_path / "file")), 2, "not a folder"),
        (("vectors", "check", str(tmp_path / "empty")), 2, "no vector files"),
        (("vectors", "check", str(tmp_path / "missing")), 1, "no such folder"),
        (("vectors", "check", "--family", "nope"), 2, "unknown family nope"),
        (("vectors", "check", "--family", "xeddsa", "--peer", str(tmp_path / "no-such-peer")), 1, "cannot start peer"),
    ]
    for args, code, needle in cases:
        out = _cli(*args)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == code, (args, out.returncode, out.stderr)
        assert len(lines) == 1 and needle in lines[0] and "Traceback" not in out.stderr, (args, out.stderr)
