"""The fuzzing set-up keeps working and what the fuzzers found stays fixed.

* Every input committed under ``fuzz/crashes/<harness>/`` replays through that harness's target
  function (``TestOneInput``, loaded without atheris' instrumentation) without an exception; for the
  differential harness a committed ``.json`` case (the ``divergence-*.json`` it writes) must get the
  verdict its ``rule`` names, and every documented divergence in its allow-list has such a witness.
* Every harness has seeds and a dictionary; the dictionaries in ``fuzz/dict/`` are the ones
  ``fuzz/make_corpora.py`` writes and parse as libFuzzer dictionaries; every seed reads back, in
  its harness, as exactly the values it was written with, and runs clean.

Needs python-axolotl's venv (``tests/interop/setup.sh``; ``make test`` builds it first).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"
sys.path.insert(0, str(FUZZ))

import fuzzkit  # noqa: E402
import make_corpora  # noqa: E402

HARNESSES = [p.stem for p in fuzzkit.harness_paths()]
CRASHES = sorted(p for p in (FUZZ / "crashes").glob("*/*") if p.is_file() and not p.name.startswith("."))


def _differential() -> ModuleType:
    return fuzzkit.load_harness("fuzz_differential")


# --------------------------------------------------------------------------- committed findings
@pytest.mark.parametrize("path", CRASHES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_committed_input_replays_clean(path: Path) -> None:
    harness = path.parent.name
    assert harness in HARNESSES, f"fuzz/crashes/{harness}/ names no harness in fuzz/"
    mod = fuzzkit.load_harness(harness)
    if harness == "fuzz_differential" and path.suffix == ".json":
        case: dict[str, Any] = json.loads(path.read_text())
        verdict = mod.replay(case)
        if "rule" in case:
            assert (verdict.kind, verdict.rule) in (("classified", case["rule"]), ("skipped", case["rule"])), (
                f"{path.name}: {verdict.kind} {verdict.rule!r}, expected rule {case['rule']!r}")
        else:
            assert verdict.kind == "agree", f"{path.name}: {verdict.kind} {verdict.rule!r}"
        return
    mod.TestOneInput(path.read_bytes())


def test_every_documented_divergence_has_a_witness() -> None:
    mod = _differential()
    rules = {r.id for r in mod.ALLOW} | {mod.SKIP_UNBOUNDED.id}
    witnessed = {json.loads(p.read_text()).get("rule") for p in CRASHES if p.suffix == ".json"}
    assert rules - witnessed == set(), "add a fuzz/crashes/fuzz_differential/<rule>.json case for each rule"
    assert witnessed - rules - {None} == set(), "a witness names a rule that is not in ALLOW"


def test_docs_list_every_divergence_rule() -> None:
    mod = _differential()
    text = (FUZZ.parent / "docs" / "fuzzing.md").read_text()
    table = set(re.findall(r"^\| `([a-z0-9-]+)` \|", text, re.M))
    assert table == {r.id for r in mod.ALLOW} | {mod.SKIP_UNBOUNDED.id}


def test_an_unexplained_divergence_fails_the_input(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without its allow-list the harness raises on a known divergence, naming both answers."""
    mod = _differential()
    case = json.loads((FUZZ / "crashes" / "fuzz_differential" / "prekey-fallback.json").read_text())
    monkeypatch.setattr(mod, "ALLOW", [])
    verdict = mod.replay(case)
    assert verdict.kind == "divergence"
    text = json.dumps(mod.describe(verdict))
    assert '"wacrypto": [["err", "DecryptionError"]]' in text and "python-axolotl" in text


def test_genuine_messages_agree() -> None:
    mod = _differential()
    for t in mod.session().targets:
        verdict = mod.judge(t, 7 if t.kind in ("group", "skdm") else 3 if t.kind == "prekey" else 2, t.body)
        assert verdict.kind == "agree", t.name
        assert verdict.rule == ("rejected" if t.plaintext is None else "accepted"), t.name


def test_missing_peer_venv_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    mod = _differential()
    monkeypatch.delenv("WACRYPTO_FUZZ_PEER", raising=False)
    monkeypatch.setattr(mod, "DEFAULT_PEER", ["/nonexistent/.venv-axolotl/bin/python", "driver.py"])
    with pytest.raises(SystemExit, match="make interop-setup"):
        mod.peer_argv()


# --------------------------------------------------------------------------- seeds and dictionaries
def test_every_harness_has_seeds_and_a_dictionary() -> None:
    missing = [h for h in HARNESSES if h not in make_corpora.SEEDS or h not in make_corpora.DICTS]
    assert not missing, f"add seeds and a dictionary for {missing} to fuzz/make_corpora.py"


_DICT_LINE = re.compile(r'^(#.*|[A-Za-z0-9_]*="(?:[\x20-\x21\x23-\x5b\x5d-\x7e]|\\\\|\\"|\\x[0-9a-fA-F]{2})+")$')


@pytest.mark.parametrize("harness", HARNESSES)
def test_dictionary_is_current_and_parses(harness: str) -> None:
    path = FUZZ / "dict" / f"{harness}.dict"
    assert path.exists(), f"run fuzz/make_corpora.py --dicts ({path.name} is missing)"
    text = path.read_text()
    assert text == make_corpora.dict_text(harness), "run fuzz/make_corpora.py --dicts"
    bad = [line for line in text.splitlines() if line and not _DICT_LINE.match(line)]
    assert not bad, bad


@pytest.mark.parametrize("harness", HARNESSES)
def test_seeds_read_back_as_written_and_run_clean(harness: str) -> None:
    seeds = make_corpora.generate(harness)
    assert seeds, "a harness without seeds"
    assert [d for _, d, _ in seeds] == [d for _, d, _ in make_corpora.generate(harness)], "seeds are not deterministic"
    assert make_corpora.verify(harness, seeds) == []


def test_verify_notices_a_seed_the_harness_reads_differently() -> None:
    """A seed written as if fuzz_stanzas read one value less than it does is caught."""
    w = fuzzkit.FdpWriter()
    w.int_in_range(0, len(fuzzkit.load_harness("fuzz_stanzas").SEEDS) - 1, 1)
    w.rest(b"")  # the harness reads an edit count before the rest
    problems = make_corpora.verify("fuzz_stanzas", [("wrong", w.data(), w)])
    assert len(problems) == 1 and "the harness read" in problems[0]


def test_writer_matches_atheris_for_every_value_kind() -> None:
    w = fuzzkit.FdpWriter()
    w.int_in_range(0, 2, 2)
    w.boolean(True)
    w.int_in_range(-2, 2**33, 2**32 + 7)
    w.bytes_(3, b"abc")
    w.ascii(4, "json")
    w.int_in_range(1, 1 << 16, 65536)
    w.boolean(False)
    w.rest(b"the rest")
    w.int_in_range(5, 9, 5)
    assert fuzzkit.replay(w.data(), w.ops) == w.ops
