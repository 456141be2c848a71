"""Tests for wm_tf/runtime/replay.py.

Every step carries its identity in the observation, ``[stream, counter, x]``
with ``counter`` the step's position in its stream, so a sampled window can be
checked against an independent record of everything added.
"""

import os

import numpy as np
import pytest

from wm_tf.runtime import replay as replay_lib
from wm_tf.runtime.replay import SequenceReplay, default_step_spec

OBS_DIM = 3
ACT_DIM = 2
SPEC = default_step_spec(OBS_DIM, ACT_DIM)


def make_step(stream, counter, is_first=False, is_last=False,
              is_terminal=False):
    """One step whose every field is a function of (stream, counter)."""
    return {
        "observation": np.array([stream, counter, np.sin(counter)],
                                np.float32),
        "action": (np.zeros(ACT_DIM, np.float32) if is_last else
                   np.array([counter * 0.5, -stream], np.float32)),
        "reward": np.float32(0.0 if is_first else counter * 0.1),
        "is_first": np.bool_(is_first),
        "is_terminal": np.bool_(is_terminal),
        "is_last": np.bool_(is_last),
    }


def episode_steps(stream, first_counter, length, terminal=True):
    """Steps of one episode of ``length`` steps."""
    return [
        make_step(stream, first_counter + t, is_first=(t == 0),
                  is_last=(t == length - 1),
                  is_terminal=(terminal and t == length - 1))
        for t in range(length)]


class Recorder:
    """Adds steps to a buffer and keeps every step added, per stream."""

    def __init__(self, replay):
        self.replay = replay
        self.added = [[] for _ in range(replay.num_streams)]

    def add(self, stream, step):
        self.replay.add(stream, step)
        self.added[stream].append(step)

    def add_episode(self, stream, length, terminal=True):
        steps = episode_steps(stream, len(self.added[stream]), length,
                              terminal)
        for step in steps:
            self.add(stream, step)
        return steps

    def reference(self, stream, key):
        """All steps of one stream for one key, [N, ...]."""
        return np.stack([step[key] for step in self.added[stream]])


def stack_steps(steps):
    return {key: np.stack([step[key] for step in steps]) for key in SPEC}


def assert_windows_are_stored_slices(batch, recorder, length):
    """Each window equals recorder.added[stream][start:start + length]."""
    observation = batch["observation"]
    assert observation.shape == (len(observation), length, OBS_DIM)
    for b in range(len(observation)):
        stream = int(observation[b, 0, 0])
        start = int(observation[b, 0, 1])
        expected = stack_steps(recorder.added[stream][start:start + length])
        assert len(expected["observation"]) == length
        for key in SPEC:
            np.testing.assert_array_equal(batch[key][b], expected[key],
                                          err_msg=key)


def test_sampled_windows_are_contiguous_slices_of_one_stream():
    replay = SequenceReplay(SPEC, capacity=300, sequence_length=7,
                            num_streams=3, seed=1)
    recorder = Recorder(replay)
    # Uneven, interleaved episodes so streams hold different step counts.
    for lengths in [(5, 9, 3), (12, 2, 8), (4, 6, 11)]:
        for stream, length in enumerate(lengths):
            recorder.add_episode(stream, length, terminal=stream != 1)
    for stream in range(3):  # an unfinished episode at the end
        for step in episode_steps(stream, len(recorder.added[stream]), 10)[:4]:
            recorder.add(stream, step)

    batch = replay.sample(400)
    for key, (shape, dtype) in SPEC.items():
        assert batch[key].shape == (400, 7) + shape
        assert batch[key].dtype == dtype
    streams = batch["observation"][..., 0]
    counters = batch["observation"][..., 1]
    # Never mixes streams, and steps are consecutive in time.
    np.testing.assert_array_equal(streams, streams[:, :1].repeat(7, axis=1))
    np.testing.assert_array_equal(np.diff(counters, axis=1), 1)
    assert_windows_are_stored_slices(batch, recorder, 7)
    # Windows do cross episode boundaries, marked by is_first.
    assert batch["is_first"][:, 1:].any()
    assert set(np.unique(streams)) == {0, 1, 2}


def test_ring_keeps_only_newest_capacity_steps():
    replay = SequenceReplay(SPEC, capacity=10, sequence_length=10, seed=0)
    recorder = Recorder(replay)
    for counter in range(25):
        recorder.add(0, make_step(0, counter, is_first=counter % 6 == 0))
    assert replay.num_steps == 10
    # Exactly one window remains: the newest 10 steps, in order.
    batch = replay.sample(3)
    expected = stack_steps(recorder.added[0][15:25])
    for key in SPEC:
        for b in range(3):
            np.testing.assert_array_equal(batch[key][b], expected[key])


def test_ring_wraparound_windows_cover_exactly_the_newest_steps():
    replay = SequenceReplay(SPEC, capacity=24, sequence_length=3,
                            num_streams=2, seed=0)
    recorder = Recorder(replay)
    for counter in range(31):
        recorder.add(0, make_step(0, counter))
    for counter in range(5):
        recorder.add(1, make_step(1, counter))
    assert replay.num_steps == 12 + 5
    batch = replay.sample(3000)
    assert_windows_are_stored_slices(batch, recorder, 3)
    starts = batch["observation"][:, 0, :2]
    stream0 = set(starts[starts[:, 0] == 0, 1].astype(int))
    stream1 = set(starts[starts[:, 0] == 1, 1].astype(int))
    # Stream 0 holds steps 19..30, so windows start at 19..28.
    assert stream0 == set(range(19, 29))
    assert stream1 == set(range(0, 3))


def test_sampling_is_uniform_over_windows():
    replay = SequenceReplay(SPEC, capacity=60, sequence_length=5,
                            num_streams=2, seed=3)
    for counter in range(20):
        replay.add(0, make_step(0, counter))
    for counter in range(10):
        replay.add(1, make_step(1, counter))
    # 16 windows in stream 0 and 6 in stream 1, 22 equally likely.
    num_samples = 22_000
    starts = replay.sample(num_samples)["observation"][:, 0, :2].astype(int)
    window_id = np.where(starts[:, 0] == 0, starts[:, 1], 16 + starts[:, 1])
    counts = np.bincount(window_id, minlength=22)
    assert len(counts) == 22
    expected = num_samples / 22
    chi_square = ((counts - expected) ** 2 / expected).sum()
    # 21 degrees of freedom: the 0.999 quantile is about 46.8. Picking a
    # stream first and then a window would give a statistic in the hundreds.
    assert chi_square < 50, (chi_square, counts)


def test_seeded_sampling_is_reproducible():
    def filled(seed):
        replay = SequenceReplay(SPEC, capacity=100, sequence_length=4,
                                num_streams=2, seed=seed)
        for counter in range(30):
            replay.add_batch(stack_steps(
                [make_step(0, counter), make_step(1, counter)]))
        return replay

    first, second, other = filled(7), filled(7), filled(8)
    for _ in range(3):
        a, b, c = first.sample(32), second.sample(32), other.sample(32)
        for key in SPEC:
            np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["observation"], c["observation"])


def test_add_batch_matches_add_per_stream():
    batched = SequenceReplay(SPEC, capacity=40, sequence_length=20,
                             num_streams=2)
    single = SequenceReplay(SPEC, capacity=40, sequence_length=20,
                            num_streams=2)
    for counter in range(20):
        steps = [make_step(0, counter, is_first=counter == 0),
                 make_step(1, counter, is_last=counter == 19)]
        batched.add_batch(stack_steps(steps))
        single.add(0, steps[0])
        single.add(1, steps[1])
    assert batched.num_steps == single.num_steps == 40
    assert batched.num_episodes == single.num_episodes == 1
    a, b = batched.sample(8), single.sample(8)
    for key in SPEC:
        np.testing.assert_array_equal(a[key], b[key])


def test_counters_and_can_sample():
    replay = SequenceReplay(SPEC, capacity=20, sequence_length=4,
                            num_streams=2)
    recorder = Recorder(replay)
    assert replay.num_steps == 0 and replay.num_episodes == 0
    assert not replay.can_sample(1)
    with pytest.raises(ValueError, match="sequence_length=4"):
        replay.sample(1)
    recorder.add_episode(0, 3)
    recorder.add_episode(1, 3, terminal=False)
    assert replay.num_episodes == 2
    assert replay.num_steps == 6
    assert not replay.can_sample(1)  # 3 steps per stream, windows need 4
    recorder.add(1, make_step(1, 3, is_first=True))
    assert replay.can_sample(16)
    assert not replay.can_sample(0)
    batch = replay.sample(5)
    assert (batch["observation"][:, :, 0] == 1).all()


@pytest.mark.parametrize("change, message", [
    (lambda step: step.pop("reward"), "missing \\['reward'\\]"),
    (lambda step: step.update(extra=np.zeros(1)), "unexpected \\['extra'\\]"),
    (lambda step: step.update(observation=np.zeros(4, np.float32)),
     r"'observation': expected shape \(3,\), got \(4,\)"),
    (lambda step: step.update(reward=np.zeros(1, np.float32)),
     r"'reward': expected shape \(\), got \(1,\)"),
    (lambda step: step.update(is_first=np.float32(1.0)),
     "'is_first': cannot store dtype float32 as bool"),
])
def test_add_rejects_bad_steps(change, message):
    replay = SequenceReplay(SPEC, capacity=10, sequence_length=2)
    step = make_step(0, 0)
    change(step)
    with pytest.raises(ValueError, match=message):
        replay.add(0, step)
    assert replay.num_steps == 0


def test_add_batch_and_constructor_reject_bad_input():
    replay = SequenceReplay(SPEC, capacity=30, sequence_length=2,
                            num_streams=3)
    with pytest.raises(ValueError, match=r"'observation': expected shape "
                                         r"\(3, 3\), got \(2, 3\)"):
        replay.add_batch(stack_steps([make_step(0, 0), make_step(1, 0)]))
    with pytest.raises(ValueError, match="stream must be in"):
        replay.add(3, make_step(3, 0))
    with pytest.raises(ValueError, match="fewer than sequence_length"):
        SequenceReplay(SPEC, capacity=10, sequence_length=4, num_streams=3)
    spec = dict(SPEC)
    del spec["is_last"]
    with pytest.raises(ValueError, match="is_last"):
        SequenceReplay(spec, capacity=10, sequence_length=2)


def episode_files(directory):
    return sorted(os.listdir(directory))


def test_finished_episodes_are_written_with_their_content(tmp_path):
    replay = SequenceReplay(SPEC, capacity=100, sequence_length=2,
                            num_streams=2, directory=tmp_path)
    recorder = Recorder(replay)
    # Stream 1 starts mid-episode: that episode's start was never seen.
    for counter in range(3):
        recorder.add(1, make_step(1, counter, is_last=counter == 2))
    assert episode_files(tmp_path) == []
    first = recorder.add_episode(0, 4)
    second = recorder.add_episode(1, 6, terminal=False)
    unfinished = episode_steps(0, 4, 5)[:3]
    for step in unfinished:
        recorder.add(0, step)
    third = recorder.add_episode(1, 2)

    assert episode_files(tmp_path) == [
        "ep-000000-s0-len4.npz", "ep-000001-s1-len6.npz",
        "ep-000002-s1-len2.npz"]
    for name, steps in zip(episode_files(tmp_path), [first, second, third]):
        expected = stack_steps(steps)
        with np.load(tmp_path / name) as data:
            assert sorted(data.files) == sorted(SPEC)
            for key in SPEC:
                np.testing.assert_array_equal(data[key], expected[key])
                assert data[key].dtype == SPEC[key][1]


def test_episode_cut_off_by_a_new_first_step_is_not_written(tmp_path):
    replay = SequenceReplay(SPEC, capacity=100, sequence_length=2,
                            directory=tmp_path)
    recorder = Recorder(replay)
    for step in episode_steps(0, 0, 6)[:3]:  # no is_last: reset mid-way
        recorder.add(0, step)
    episode = recorder.add_episode(0, 4)
    assert episode_files(tmp_path) == ["ep-000000-s0-len4.npz"]
    with np.load(tmp_path / "ep-000000-s0-len4.npz") as data:
        np.testing.assert_array_equal(
            data["observation"], stack_steps(episode)["observation"])


def test_new_buffer_on_existing_directory_does_not_overwrite(tmp_path):
    write_episodes(tmp_path, [3, 4])
    replay = SequenceReplay(SPEC, capacity=100, sequence_length=2,
                            directory=tmp_path)
    Recorder(replay).add_episode(0, 5)
    assert episode_files(tmp_path) == [
        "ep-000000-s0-len3.npz", "ep-000001-s1-len4.npz",
        "ep-000002-s0-len5.npz"]


def test_episode_write_is_atomic(tmp_path, monkeypatch):
    replay = SequenceReplay(SPEC, capacity=50, sequence_length=2,
                            directory=tmp_path)
    steps = episode_steps(0, 0, 5)
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def spy_fsync(fd):
        events.append("fsync")
        real_fsync(fd)

    def spy_replace(source, target):
        events.append("replace")
        # The full episode is already on disk under a name load ignores,
        # in the target's directory so the rename cannot cross filesystems.
        assert os.path.dirname(source) == os.path.dirname(target)
        assert os.path.exists(source)
        assert replay_lib.list_episode_files(tmp_path) == []
        with np.load(source) as data:
            np.testing.assert_array_equal(
                data["observation"], stack_steps(steps)["observation"])
        assert not os.path.exists(target)
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", spy_fsync)
    monkeypatch.setattr(os, "replace", spy_replace)
    for step in steps:
        replay.add(0, step)
    assert events[:2] == ["fsync", "replace"]
    assert episode_files(tmp_path) == ["ep-000000-s0-len5.npz"]


def test_failed_episode_write_leaves_no_file(tmp_path, monkeypatch):
    replay = SequenceReplay(SPEC, capacity=50, sequence_length=2,
                            directory=tmp_path)

    def failing_replace(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    steps = episode_steps(0, 0, 3)
    replay.add(0, steps[0])
    replay.add(0, steps[1])
    with pytest.raises(OSError, match="disk full"):
        replay.add(0, steps[2])
    assert episode_files(tmp_path) == []


def write_episodes(directory, lengths, num_streams=2):
    """Fills a buffer stream by stream; returns the episodes in file order."""
    replay = SequenceReplay(SPEC, capacity=1000, sequence_length=2,
                            num_streams=num_streams, directory=directory)
    recorder = Recorder(replay)
    episodes = []
    for number, length in enumerate(lengths):
        stream = number % num_streams
        episodes.append(recorder.add_episode(stream, length))
    return episodes


def test_load_round_trip_gives_the_same_steps(tmp_path):
    episodes = write_episodes(tmp_path, [4, 7, 3, 5, 6])
    before = {name: os.stat(tmp_path / name).st_mtime_ns
              for name in episode_files(tmp_path)}

    total = sum(len(steps) for steps in episodes)
    replay = SequenceReplay(SPEC, capacity=total, sequence_length=total,
                            directory=tmp_path)
    assert replay.load() == total
    assert replay.num_steps == total
    assert replay.num_episodes == 5
    # The single window is every episode, concatenated in index order.
    batch = replay.sample(2)
    expected = stack_steps([step for steps in episodes for step in steps])
    for key in SPEC:
        np.testing.assert_array_equal(batch[key][0], expected[key])
    # Nothing was re-written.
    after = {name: os.stat(tmp_path / name).st_mtime_ns
             for name in episode_files(tmp_path)}
    assert after == before


def test_load_deals_episodes_round_robin_over_streams(tmp_path):
    episodes = write_episodes(tmp_path, [4, 7, 3, 5, 6], num_streams=1)
    replay = SequenceReplay(SPEC, capacity=26, sequence_length=12,
                            num_streams=2)
    assert replay.load(tmp_path) == 25
    # Stream 0 gets episodes 0, 2, 4 (13 steps, 2 windows), stream 1 gets
    # episodes 1, 3 (12 steps, 1 window).
    stream0 = stack_steps(episodes[0] + episodes[2] + episodes[4])
    stream1 = stack_steps(episodes[1] + episodes[3])
    candidates = [
        {key: value[0:12] for key, value in stream0.items()},
        {key: value[1:13] for key, value in stream0.items()},
        stream1,
    ]
    batch = replay.sample(60)
    matched = set()
    for b in range(60):
        hits = [n for n, window in enumerate(candidates)
                if all(np.array_equal(batch[key][b], window[key])
                       for key in SPEC)]
        assert len(hits) == 1
        matched.add(hits[0])
    assert matched == {0, 1, 2}


def test_episode_index_continues_after_load(tmp_path):
    write_episodes(tmp_path, [3, 4, 5])
    replay = SequenceReplay(SPEC, capacity=100, sequence_length=2,
                            num_streams=2, directory=tmp_path)
    replay.load()
    recorder = Recorder(replay)
    recorder.add_episode(1, 6)
    assert episode_files(tmp_path) == [
        "ep-000000-s0-len3.npz", "ep-000001-s1-len4.npz",
        "ep-000002-s0-len5.npz", "ep-000003-s1-len6.npz"]


def test_load_skips_corrupt_file_and_temp_files(tmp_path):
    episodes = write_episodes(tmp_path, [4, 5, 6])
    # Truncate the middle episode as a crash without atomic writes would.
    middle = tmp_path / "ep-000001-s1-len5.npz"
    middle.write_bytes(middle.read_bytes()[:40])
    # A leftover temp file from an interrupted write is not an episode.
    (tmp_path / ".ep-000003-s0-len9.npz.abc.tmp").write_bytes(b"partial")

    replay = SequenceReplay(SPEC, capacity=100, sequence_length=10,
                            directory=tmp_path)
    with pytest.warns(UserWarning, match="ep-000001-s1-len5.npz") as caught:
        assert replay.load() == 4 + 6
    assert len(caught) == 1
    batch = replay.sample(1)
    expected = stack_steps(episodes[0] + episodes[2])
    for key in SPEC:
        np.testing.assert_array_equal(batch[key][0], expected[key])
    # The corrupt file's index stays taken: new episodes never overwrite it.
    Recorder(replay).add_episode(0, 2)
    assert "ep-000003-s0-len2.npz" in episode_files(tmp_path)


def test_load_skips_file_not_matching_spec(tmp_path):
    write_episodes(tmp_path, [4])
    spec = default_step_spec(OBS_DIM + 1, ACT_DIM)
    replay = SequenceReplay(spec, capacity=100, sequence_length=2)
    with pytest.warns(UserWarning, match="ep-000000-s0-len4.npz"):
        assert replay.load(tmp_path) == 0
    assert replay.num_steps == 0


def test_load_refuses_to_land_inside_a_live_episode(tmp_path):
    write_episodes(tmp_path, [4])
    replay = SequenceReplay(SPEC, capacity=100, sequence_length=2)
    replay.add(0, make_step(0, 0, is_first=True))
    with pytest.raises(RuntimeError, match="inside an episode"):
        replay.load(tmp_path)


def test_open_episodes_saved_in_parts_load_joined(tmp_path):
    """Steps of unfinished episodes saved midway (as at a checkpoint) go to
    part files, the rest to continuations; loading joins them back into the
    same episodes, interleaved streams and an episode left open included."""
    replay = SequenceReplay(SPEC, capacity=1000, sequence_length=2,
                            num_streams=2, directory=tmp_path)
    a = episode_steps(0, 0, 9)
    b = episode_steps(1, 100, 6)
    c = episode_steps(1, 200, 5, terminal=False)[:-1]  # never finished
    for t in range(4):
        replay.add(0, a[t])
    for t in range(3):
        replay.add(1, b[t])
    assert replay.save_open_episodes() == 7
    assert replay.save_open_episodes() == 0  # nothing new since
    for t in range(4, 7):
        replay.add(0, a[t])
    for t in range(3, 6):
        replay.add(1, b[t])
    for step in c:
        replay.add(1, step)
    assert replay.save_open_episodes() == 3 + 4  # a's middle part, all of c
    for t in range(7, 9):
        replay.add(0, a[t])
    assert len(episode_files(tmp_path)) == 6

    loaded = SequenceReplay(SPEC, capacity=1000, sequence_length=19,
                            num_streams=1, directory=tmp_path)
    assert loaded.load() == 9 + 6 + 4
    assert loaded.num_episodes == 2  # a and b finished; c is open
    # Whole episodes in the order their last files were read (b's ends
    # before a's), the one left open last.
    window = loaded.sample(1)  # the one window: every step loaded
    expected = stack_steps(b + a + c)
    for key in SPEC:
        np.testing.assert_array_equal(window[key][0], expected[key], key)
