"""The design lab: its measures tell a wrong model from a right one, its
verdict rule, and the benchmark end to end on a reduced budget."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from benchmarks import design_claims, design_lab, design_report
from wm_tf.lab import bounce, dice, measures, probes

tfd = tfp.distributions
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_energy_distance_tells_a_single_gaussian_from_the_bimodal_bounce():
  env, rng = bounce.Bounce(), np.random.default_rng(0)
  peg = np.array([0.0, 1.0, 1.0], np.float32)
  true, again = (env.sample_next(peg, 1, 1000, rng) for _ in range(2))
  # The Gaussian of the same mean and std per coordinate.
  gaussian = rng.normal(true.mean(0), true.std(0) + 1e-6, size=true.shape)
  assert (measures.energy_distance(gaussian, true) >
          4 * measures.energy_distance(again, true))
  assert measures.kde_nll(true, again, 0.1) < measures.kde_nll(
      true, gaussian, 0.1) - 0.5


def test_a_point_estimate_of_a_die_roll_is_far_from_every_face():
  env, rng = dice.Dice(), np.random.default_rng(1)
  true = env.sample_next(dice.one_hot(2), dice.ROLL, 600, rng)
  again = env.sample_next(dice.one_hot(2), dice.ROLL, 600, rng)
  mean_face = np.repeat(true.mean(0, keepdims=True), 600, 0)
  assert (measures.energy_distance(mean_face, true) >
          4 * measures.energy_distance(again, true))
  faces = np.arange(1, 7)
  assert measures.wasserstein_1d(mean_face @ faces, true @ faces) > 1.0


class _Identity:
  """A head whose mean is its input."""

  def __call__(self, x):
    return tfd.Deterministic(x)


class _IdentityDecoder:
  """A decoder whose mean for the lab's one observation key is its input."""

  def __call__(self, x):
    return {'observation': tfd.Deterministic(x)}


class BounceModel:
  """A hand-made world model of Bounce at the peg: latent = observation.

  `bimodal` predicts the true two outcomes; otherwise one Normal at their
  mean with their std (what a single Gaussian fits).
  """

  def __init__(self, bimodal: bool):
    self.bimodal = bimodal
    self.decoder = _IdentityDecoder()

  def encode(self, obs):
    return tf.convert_to_tensor(obs['observation'])

  def dynamics(self, latent, action):
    paddle = 2.0 * tf.cast(tf.argmax(action, -1), tf.float32) - 1.0
    ones = tf.ones_like(paddle)
    left = tf.stack([-0.25 * ones, -ones, paddle], -1)
    right = tf.stack([0.25 * ones, ones, paddle], -1)
    if self.bimodal:
      locs = tf.stack([left, right], -2)
      return tfd.MixtureSameFamily(
          tfd.Categorical(logits=tf.zeros_like(locs[..., 0])),
          tfd.MultivariateNormalDiag(locs, 1e-3 * tf.ones_like(locs)))
    std = tf.constant([0.25, 1.0, 1e-3])
    return tfd.MultivariateNormalDiag(0.5 * (left + right),
                                      std * tf.ones_like(left))


def test_next_state_probe_scores_the_right_model_near_the_floor():
  env = bounce.Bounce()
  states = env.probe_states(4, np.random.default_rng(0))
  actions = np.array([0, 1, 0, 1])
  right, wrong = (probes.next_state_measures(
      BounceModel(bimodal), env, states, actions, np.random.default_rng(2),
      samples=300) for bimodal in (True, False))
  assert right['energy'] < 2 * right['energy_floor'] + 0.02
  assert wrong['energy'] > 3 * right['energy']
  assert wrong['nll'] > right['nll']
  assert wrong['wasserstein'] > right['wasserstein']


def test_discounted_returns_stop_after_an_end():
  rewards = np.array([[1.0, 1.0, 1.0]])
  continues = np.array([[1.0, 0.0, 1.0]])
  # r_1 + gamma c_1 r_2 + gamma^2 c_1 c_2 r_3
  assert probes._discounted(rewards, continues, 0.5) == pytest.approx(1.5)


@pytest.mark.parametrize('predicts, sign, expected', [
    (design_claims.BETTER, 1, 'confirmed'),
    (design_claims.BETTER, -1, 'refuted'),
    (design_claims.BETTER, 0, 'no measurable difference'),
    (design_claims.WORSE, 1, 'refuted'),
    (design_claims.NO_WORSE, 0, 'confirmed (no measurable difference)'),
    (design_claims.NO_WORSE, -1, 'refuted'),
    (design_claims.SAME, 1, 'refuted'),
])
def test_verdicts(predicts, sign, expected):
  assert design_report.verdict(predicts, sign) == expected


def test_difference_needs_separated_seeds_and_a_gap_beyond_tolerance():
  assert design_report.difference([1, 2, 3], [2.5, 4, 5], True, 0.05) == 0
  assert design_report.difference([5, 6], [1, 2], True, 0.05) == 1
  assert design_report.difference([5, 6], [1, 2], False, 0.05) == -1
  assert design_report.difference([1.01], [1.0], True, 0.05) == 0


def test_every_claim_names_a_lab_env_and_a_known_measure_or_why_not():
  names = [c.name for c in design_claims.CLAIMS]
  assert len(names) == len(set(names))
  for claim in design_claims.CLAIMS:
    assert claim.where
    reasons = [claim.missing, claim.untestable, claim.elsewhere]
    assert sum(bool(r) for r in reasons) <= 1, claim.name
    if not claim.runs:
      assert not claim.env and not claim.baseline and not claim.alternative
      continue
    assert claim.env in design_lab.LAB_ENVS
    assert claim.measure in design_claims.MEASURES
    assert claim.baseline != claim.alternative


def test_claims_the_lab_cannot_decide_get_no_runs_and_say_why():
  claims = {c.name: c for c in design_claims.CLAIMS}
  chosen = [claims[n] for n in ('mixture_bounce', 'ensemble_mbpo',
                                'point_pong', 'mpc_test_time')]
  jobs = design_lab.plan_runs(chosen, 2, lambda env: 100)
  assert sorted(jobs) == sorted(
      f'bounce__{key}/seed{s}' for key in ('baseline', 'dynamics_type-mixture')
      for s in range(2))
  rows = [design_report.claim_row(c, {}, 2, 0.05, design_lab.run_key)
          for c in chosen]
  assert rows[0]['verdict'] == 'not measured: runs missing or failed'
  assert rows[1]['verdict'].startswith('not testable: it cites')
  assert rows[2]['verdict'].startswith('not measured: needs learning Pong')
  assert rows[3]['verdict'].startswith('measured outside the lab: ')
  table = design_report.markdown_table({'claims': rows}).splitlines()
  assert len({line.count(' | ') for line in table}) == 1


def test_benchmark_end_to_end_on_a_reduced_budget(tmp_path):
  """Two runs (Bounce, Gaussian against mixture dynamics) of 400 steps."""
  out = subprocess.run(
      [sys.executable, '-m', 'benchmarks.design_lab', '--quick',
       '--only=mixture_bounce', '--budget_scale=0.16', '--parallel=2',
       '--set=run.prefill_steps=200', '--set=replay.batch_size=4',
       '--samples=50', f'--runs={tmp_path}/runs', f'--output={tmp_path}',
       '--name=lab'], cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
  report = json.load(open(tmp_path / 'lab.json'))
  (row,) = report['claims']
  assert row['verdict'].startswith(('confirmed', 'refuted',
                                    'no measurable difference',
                                    'inconclusive'))
  for side in ('baseline_values', 'alternative_values'):
    for measure in ('eval_return', 'energy', 'nll', 'wasserstein',
                    'return_error', 'on_outcomes', 'outcomes_covered'):
      (value,) = row[side][measure]
      assert np.isfinite(value)
    assert 0 <= row[side]['on_outcomes'][0] <= 1
  with open(tmp_path / 'lab.csv') as f:
    assert [r['name'] for r in csv.DictReader(f)] == ['mixture_bounce']
  assert (tmp_path / 'lab_next_state.png').stat().st_size > 1000
  assert '| distributions |' in out.stdout
  # The modes table: one line per configuration, from the run's samples.
  assert '| bounce / baseline |' in out.stdout
  assert '| bounce / dynamics_type-mixture |' in out.stdout


def test_outcome_measures_read_the_plotted_samples():
  true = [-0.25, 0.25] * 50
  separated = {'true': true, 'imagined': [-0.26, 0.24] * 50}
  merged = {'true': true, 'imagined': [0.0] * 100}
  assert design_report.outcome_measures(separated) == {
      'on_outcomes': 1.0, 'outcomes_covered': 1.0}
  assert design_report.outcome_measures(merged) == {
      'on_outcomes': 0.0, 'outcomes_covered': 0.0}
  # Dice faces 1 apart: within 0.25 of a face counts.
  faces = {'true': [1, 2, 3, 4, 5, 6] * 10,
           'imagined': [1.2, 2.3, 3.5, 4.0, 5.0, 6.1] * 10}
  measured = design_report.outcome_measures(faces)
  assert measured['on_outcomes'] == pytest.approx(4 / 6)
  assert measured['outcomes_covered'] == pytest.approx(4 / 6)
  assert design_report.outcome_measures({}) == {}


class _Encoder:
  def encode(self, obs):
    return tf.convert_to_tensor(obs['observation'])


class _AlwaysRight:
  def __call__(self, latent):
    n = tf.shape(latent)[0]
    return tfd.Deterministic(tf.one_hot(tf.fill([n], 1), 2))


def corridor_values(length, horizon, gamma):
  """Finite-horizon values of 'always right' by backward induction."""
  values = np.zeros(length)
  for _ in range(horizon):
    new = np.zeros(length)
    for c in range(length - 1):
      end = c + 1 == length - 1
      move = 0.1 + (1.0 if end else 0.0) + (0.0 if end else gamma *
                                            values[c + 1])
      new[c] = 0.8 * move + 0.2 * gamma * values[c]
    values = new
  return values


def test_true_returns_match_backward_induction_on_the_corridor():
  from wm_tf.lab import corridor
  states = np.array([[0.0], [0.4], [0.8]], np.float32)
  got = probes.true_returns(_Encoder(), _AlwaysRight(),
                            lambda: corridor.Corridor(length=6), states,
                            horizon=8, gamma=0.9, rollouts=4000,
                            rng=np.random.default_rng(0))
  want = corridor_values(6, 8, 0.9)[[0, 2, 4]]
  np.testing.assert_allclose(got, want, atol=0.03)
