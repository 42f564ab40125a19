"""Instances gathered by study; a study handed over once, when quiet; none lost on restart."""

from __future__ import annotations

from pathlib import Path

from api.dimse.gathering import StudyGatherer


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def receive(gatherer: StudyGatherer, owner: str, study: str, name: str,
            urgent: bool = False) -> None:
    folder = gatherer.begin(owner, study, urgent)
    (folder / name).write_bytes(b"instance")
    gatherer.end(owner, study)


def test_each_study_is_handed_over_once_when_quiet(tmp_path: Path) -> None:
    clock, handed = Clock(), []
    gatherer = StudyGatherer(tmp_path / "spool", 10.0,
                             lambda folder, owner, urgent: handed.append(
                                 (owner, sorted(p.name for p in folder.iterdir()))),
                             clock=clock)
    gatherer.spool.mkdir()
    receive(gatherer, "pacs", "1.2.3", "a.dcm")
    clock.now = 6.0
    receive(gatherer, "pacs", "1.2.3", "b.dcm")
    receive(gatherer, "other", "1.2.3", "c.dcm")  # another owner: another study
    clock.now = 12.0
    assert gatherer.hand_over_quiet() == 0  # 6 s since the last instance
    folder = gatherer.begin("pacs", "9.9")  # an instance still being written
    clock.now = 16.0
    assert gatherer.hand_over_quiet() == 2
    assert sorted(handed) == [("other", ["c.dcm"]), ("pacs", ["a.dcm", "b.dcm"])]
    clock.now = 100.0
    assert gatherer.hand_over_quiet() == 0
    (folder / "d.dcm").write_bytes(b"instance")
    gatherer.end("pacs", "9.9")
    clock.now = 110.0
    assert gatherer.hand_over_quiet() == 1
    assert handed[-1] == ("pacs", ["d.dcm"])


def test_studies_left_by_a_stopped_process_are_handed_over_after_a_restart(
    tmp_path: Path
) -> None:
    clock, handed = Clock(), []
    first = StudyGatherer(tmp_path / "spool", 10.0, lambda f, o, u: handed.append(o), clock=clock)
    first.start()
    receive(first, "pacs", "1.2.3", "a.dcm")
    first.stop()
    assert handed == []
    second = StudyGatherer(tmp_path / "spool", 10.0, lambda f, o, u: handed.append(o), clock=clock)
    second.start()
    try:
        clock.now = 20.0
        assert second.hand_over_quiet() == 1
    finally:
        second.stop()
    assert handed == ["pacs"]


def test_a_study_whose_every_instance_was_refused_is_not_handed_over(tmp_path: Path) -> None:
    clock, handed = Clock(), []
    gatherer = StudyGatherer(tmp_path / "spool", 1.0, lambda f, o, u: handed.append(o), clock=clock)
    gatherer.spool.mkdir()
    gatherer.begin("pacs", "1.2.3")
    gatherer.end("pacs", "1.2.3")  # its file was deleted: a failure status was sent
    clock.now = 5.0
    assert gatherer.hand_over_quiet() == 1
    assert handed == []
    assert list(gatherer.spool.iterdir()) == []


def test_one_urgent_instance_makes_its_study_urgent_even_after_a_restart(tmp_path: Path) -> None:
    clock, handed = Clock(), []
    first = StudyGatherer(tmp_path / "spool", 10.0, lambda f, o, u: None, clock=clock)
    first.start()
    receive(first, "pacs", "1.2.3", "a.dcm")
    receive(first, "pacs", "1.2.3", "b.dcm", urgent=True)  # C-STORE priority HIGH
    receive(first, "pacs", "4.5.6", "c.dcm")
    first.stop()
    second = StudyGatherer(tmp_path / "spool", 10.0, lambda folder, owner, urgent: handed.append(
        (sorted(p.name for p in folder.iterdir()), urgent)), clock=clock)
    second.start()
    try:
        clock.now = 20.0
        assert second.hand_over_quiet() == 2
    finally:
        second.stop()
    # The marker tells the receiver, and is not handed over as an instance.
    assert sorted(handed) == [(["a.dcm", "b.dcm"], True), (["c.dcm"], False)]
