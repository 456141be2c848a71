"""The claims of the design (../shared/DESIGN.md) that the design lab checks.

Each `Claim` quotes one "when to use" item, "Consider alternatives" line or
summary-table row (`where`: the decision, and the alternative's list or
table it is in), names the lab environment it is about, the baseline's and
the alternative's overrides of benchmarks/design_lab.yaml, the measure that
decides it and what the claim predicts for the alternative. Every item of
those lists has a row; one that the lab cannot decide has no runs and says
why: `missing` (it needs an environment or a component wm_tf and the lab
lack), `untestable` (it states a fact about other work or about the code's
shape, not an outcome to measure) or `elsewhere` (measured by another
benchmark; the docs give the numbers).
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

# What a claim predicts for the alternative against its baseline.
BETTER, WORSE, NO_WORSE, SAME = 'better', 'worse', 'no_worse', 'same'

# measure -> True if larger is better.
MEASURES = {
    'eval_return': True,
    'energy': False,
    'nll': False,
    'wasserstein': False,
    'return_error': False,
    'value_error': False,
    'auroc': True,
}


@dataclasses.dataclass(frozen=True)
class Claim:
  name: str
  decision: str
  text: str  # the design's words
  where: str  # the design's list or table the words are from
  env: str = ''  # a key of benchmarks.design_lab.LAB_ENVS
  baseline: Tuple[str, ...] = ()
  alternative: Tuple[str, ...] = ()
  measure: str = 'eval_return'
  predicts: str = NO_WORSE
  missing: Optional[str] = None  # what the lab lacks to measure it
  untestable: Optional[str] = None  # why it is no outcome to measure
  elsewhere: Optional[str] = None  # the benchmark and docs that measure it

  @property
  def why_not(self) -> Optional[str]:
    """The verdict of a claim the lab does not run, else None."""
    if self.missing:
      return 'not measured: needs ' + self.missing
    if self.untestable:
      return 'not testable: ' + self.untestable
    if self.elsewhere:
      return 'measured outside the lab: ' + self.elsewhere
    return None

  @property
  def runs(self) -> bool:
    """Whether the lab trains agents for this claim."""
    return self.why_not is None


POINT = ('dynamics.type=deterministic',)
MC = ('returns.type=monte_carlo',)
LONG_HORIZON = ('imagination.horizon=45',)
CITATION = 'it cites another method, and states no outcome'
SOFTWARE = ('it is about the shape of the code or the project, not about '
            'what the agent learns')
ALTERNATIVES_TIMING = ('benchmarks.alternatives timing, '
                       'docs/choosing_a_design.md')

# `where`: D1..D6 the design's decisions; 'when' an alternative's "When to
# use" list, 'consider' a "Consider alternatives/upgrades" list, 'why' its
# "Why this design" and 'choice' its "Recommended choice" text, 'summary'
# the summary table at the end.
CLAIMS = (
    # Decision 1: optimizers.
    Claim('single_optimizer', 'optimizers',
          'Single optimizer: gradient pollution (WM sees RL gradients) '
          'could hurt WM quality', 'D1 alt 1 cons', 'grid', (),
          ('optimizers.type=single',), 'energy', WORSE),
    Claim('single_optimizer_simple', 'optimizers',
          'Small projects; when simplicity > performance; need extreme '
          'simplicity -> single optimizer', 'D1 alt 1 when; summary',
          'grid', (), ('optimizers.type=single',), 'eval_return', NO_WORSE),
    Claim('single_optimizer_weights', 'optimizers',
          'Single optimizer: if you find good alpha, beta values',
          'D1 alt 1 when',
          missing='a sweep of optimizers.alpha and optimizers.beta; the '
          'lab runs alpha = beta = 1 (single_optimizer)'),
    Claim('masked_optimizer', 'optimizers',
          'Gradient masking: same effect as separate optimizers',
          'D1 alt 2 pros', 'grid', (), ('optimizers.type=masked',),
          'eval_return', SAME),
    Claim('masked_framework', 'optimizers',
          'Gradient masking: if you need a single optimizer for framework '
          'reasons; rare in practice', 'D1 alt 2 when',
          untestable=SOFTWARE),
    Claim('target_network', 'optimizers',
          'Target networks: large world models, or actor training unstable',
          'D1 alt 3 when',
          missing='no lab environment with a large world model or an '
          'unstable actor (world_model.target exists: copy, ema)'),
    Claim('target_off_policy', 'optimizers',
          'Target networks: off-policy training (like MBPO)',
          'D1 alt 3 when',
          missing='wm_tf has no MBPO-style learner that trains a model-free '
          'agent on model rollouts'),
    # Decision 2: distributions.
    Claim('point_grid', 'distributions',
          'Point estimates: deterministic environments (GridWorld); env '
          'deterministic -> point estimates', 'D2 alt 1 when; summary',
          'grid', (), POINT, 'eval_return', NO_WORSE),
    Claim('point_grid_model', 'distributions',
          'Point estimates: deterministic environments (GridWorld), the '
          'model', 'D2 alt 1 when', 'grid', (), POINT, 'energy', NO_WORSE),
    Claim('point_speed', 'distributions',
          'Point estimates: when speed > accuracy; deterministic and need '
          'speed -> point estimates with MSE', 'D2 alt 1 when; consider',
          elsewhere=ALTERNATIVES_TIMING),
    Claim('point_prototyping', 'distributions',
          'Point estimates: quick prototyping', 'D2 alt 1 when',
          untestable=SOFTWARE),
    Claim('point_cartpole', 'distributions',
          'CartPole: nearly deterministic, point estimate OK',
          'D2 alt 1 examples',
          elsewhere='benchmarks.alternatives on CartPole, '
          'docs/choosing_a_design.md'),
    Claim('point_pong', 'distributions',
          'Atari Pong: deterministic, point estimate OK', 'D2 alt 1 examples',
          missing='learning Pong takes a GPU; this machine has 2 CPU cores'),
    Claim('noisy_robotics', 'distributions',
          'Robotics with noise: need distributions', 'D2 alt 1 cons',
          missing='no robotics environment in the lab'),
    Claim('dice_distributions', 'distributions',
          'Dice games: DEFINITELY need distributions', 'D2 alt 1 cons',
          'dice', POINT, (), 'energy', BETTER),
    Claim('dice_distributions_return', 'distributions',
          'Dice games: DEFINITELY need distributions (imagined return)',
          'D2 alt 1 cons', 'dice', POINT, (), 'return_error', BETTER),
    Claim('point_multimodal', 'distributions',
          'MSE struggles with multimodal dynamics (can go left OR right)',
          'D2 why', 'bounce', (), POINT, 'energy', WORSE),
    Claim('ensemble_ood', 'distributions',
          'Ensemble: can detect out-of-distribution states (high std); when '
          'uncertainty is crucial for safety', 'D2 alt 2 pros; when', 'ood',
          (), ('dynamics.type=ensemble',), 'auroc', BETTER),
    Claim('ensemble_high_stakes', 'distributions',
          'Ensemble: high-stakes applications (robotics, finance)',
          'D2 alt 2 when',
          missing='no robotics or finance environment in the lab'),
    Claim('ensemble_mbpo', 'distributions',
          'Ensemble: MBPO paper uses ensembles successfully',
          'D2 alt 2 when', untestable=CITATION),
    Claim('ensemble_unstable', 'distributions',
          'If training unstable -> try ensembles (5 models); need '
          'robustness -> ensembles', 'D2 consider; summary',
          missing='no lab environment whose training is unstable'),
    Claim('mixture_bounce', 'distributions',
          'Mixture: truly multi-modal dynamics (ball could go left OR '
          'right)', 'D2 alt 3 when; consider', 'bounce', (),
          ('dynamics.type=mixture',), 'energy', BETTER),
    Claim('mixture_bounce_return', 'distributions',
          'Env multi-modal -> mixture models (eval return)', 'summary',
          'bounce', (), ('dynamics.type=mixture',), 'eval_return', BETTER),
    Claim('mixture_dice', 'distributions',
          'Mixture: complex stochastic environments (6 faces)',
          'D2 alt 3 when', 'dice', (),
          ('dynamics.type=mixture', 'dynamics.components=6'), 'energy',
          BETTER),
    Claim('mixture_research', 'distributions',
          'Mixture: research projects exploring expressiveness',
          'D2 alt 3 when', untestable=SOFTWARE),
    # Decision 3: returns.
    Claim('mc_short', 'returns',
          'Episodes very short (< 50 steps) -> try pure MC; short episodes '
          '(< 100 steps); episodes very short -> pure MC',
          'D3 consider; alt 1 when; summary', 'corridor_short', (), MC,
          'value_error', NO_WORSE),
    Claim('mc_short_return', 'returns',
          'Episodes very short (< 50 steps) -> try pure MC (eval return)',
          'D3 consider', 'corridor_short', (), MC, 'eval_return', NO_WORSE),
    Claim('mc_simple', 'returns',
          'Pure MC: simple environments (high signal-to-noise)',
          'D3 alt 1 when', 'grid', (), MC, 'value_error', NO_WORSE),
    Claim('mc_unreliable_value', 'returns',
          'Pure MC: when the value function is unreliable', 'D3 alt 1 when',
          missing='no lab environment whose critic is unreliable by '
          'construction'),
    Claim('mc_long', 'returns',
          'Pure MC: high variance -> slow learning (long episodes)',
          'D3 alt 1 cons', 'corridor_long', (), MC, 'value_error', WORSE),
    Claim('lambda_095', 'returns', 'lambda = 0.95 works for most tasks',
          'D3 choice', 'corridor_long', ('returns.lambda=0.99',), (),
          'value_error', NO_WORSE),
    Claim('lambda_099_bias', 'returns', 'High bias observed -> higher '
          'lambda (0.99)', 'summary', 'corridor_long', (),
          ('returns.lambda=0.99',), 'value_error', BETTER),
    Claim('gae', 'returns',
          'GAE would also work (similar performance); want advantages '
          '(explicitly) -> GAE', 'D3 choice; consider; alt 3 when; summary',
          'corridor_short', (), ('returns.type=gae',), 'value_error', SAME),
    Claim('gae_policy_gradient', 'returns',
          'GAE: policy gradient methods (PPO, TRPO); standard in model-free '
          'RL', 'D3 alt 3 when', untestable=CITATION),
    Claim('n_step', 'returns',
          'Fixed-horizon problems -> n-step returns; want fixed horizon -> '
          'try n-step returns', 'D3 alt 2 when; consider', 'corridor_short',
          (), ('returns.type=n_step',), 'value_error', NO_WORSE),
    Claim('n_step_tune', 'returns',
          'N-step: when you want control over bias-variance (tune n)',
          'D3 alt 2 when',
          missing='a sweep of returns.n; the lab runs its default'),
    # Decision 4: representation learner.
    Claim('merge_encoder', 'representation',
          'Simple environments (state-based) -> single encoder, no repr '
          'learner; simplicity critical -> merge into encoder',
          'D4 alt 1 when; summary', 'grid', (),
          ('representation_learner.type=none',
           'representation_learner.latent_dim=64'), 'eval_return', NO_WORSE),
    Claim('merge_prototyping', 'representation',
          "Single encoder: when you're certain about the representation "
          'type; prototyping', 'D4 alt 1 when', untestable=SOFTWARE),
    Claim('implicit_learner', 'representation',
          'Implicit repr learner: if you value simplicity > extreme '
          'modularity; reasonable middle ground', 'D4 alt 2 when',
          untestable=SOFTWARE),
    Claim('stochastic_vae', 'representation',
          'Need stochastic -> add VAE/RSSM (the VAE)', 'summary', 'dice', (),
          ('representation_learner.type=vae',), 'energy', BETTER),
    Claim('hierarchical', 'representation',
          'Hierarchical repr learners: very high-dim observations (videos); '
          'hierarchical world models (rare)', 'D4 alt 3 when',
          missing='wm_tf has no hierarchical representation learner and '
          'the lab no video observations'),
    # Decision 5: imagination.
    Claim('model_free', 'imagination',
          'Model-free only: simple, fast environments; when world model '
          'quality poor; baseline comparison', 'D5 alt 1 when',
          missing='wm_tf has no model-free learner'),
    Claim('dyna_errors', 'imagination',
          'When the world model has systematic errors; WM exploiting errors '
          '-> add Dyna mixing', 'D5 alt 2 when; consider; summary', 'dice',
          POINT, POINT + ('imagination.mode=dyna',), 'eval_return', BETTER),
    Claim('dyna_ratio', 'imagination',
          'Dyna typical ratios: 20% real, 80% imagined (aggressive); 50% '
          'real (balanced)', 'D5 alt 2 ratios', 'dice',
          POINT + ('imagination.mode=dyna',),
          POINT + ('imagination.mode=dyna', 'imagination.real_ratio=0.2'),
          'eval_return', NO_WORSE),
    Claim('dyna_mbpo', 'imagination',
          'Dyna: MBPO uses this; hybrid approach', 'D5 alt 2 when',
          untestable=CITATION),
    Claim('mpc_small_actions', 'imagination',
          'MPC: small action spaces, accurate world models', 'D5 alt 3 when',
          # XLA for this run alone: the planner's unrolled CEM loop of
          # small ops, run at every acting step, is several times faster
          # compiled; the compile mode changes the eval return this claim
          # measures only through the random numbers drawn.
          'grid', (), ('imagination.mode=mpc', 'run.jit=true'),
          'eval_return', NO_WORSE),
    Claim('mpc_test_time', 'imagination',
          'If test-time speed not important -> try MPC', 'D5 consider',
          elsewhere=ALTERNATIVES_TIMING),
    Claim('mpc_interpretability', 'imagination',
          'MPC: offline planning acceptable (robotics); need '
          'interpretability -> try MPC', 'D5 alt 3 when; summary',
          untestable='interpretability and an offline setting are '
          'requirements of a project, not outcomes of a run'),
    Claim('symlog_long', 'imagination',
          'Imagination horizon > 15 steps; long horizons unstable -> add '
          'symlog', 'D5 alt 4 when; consider; summary', 'corridor_long',
          LONG_HORIZON, LONG_HORIZON + ('imagination.symlog=true',),
          'eval_return', BETTER),
    Claim('symlog_unstable', 'imagination',
          'Symlog: if training unstable; pushing state-of-the-art',
          'D5 alt 4 when',
          missing='no lab environment whose training is unstable (symlog '
          'on CartPole and Pendulum: docs/choosing_a_design.md)'),
    Claim('sampled_imagination', 'imagination',
          'Distributions: sample diverse rollouts (deterministic '
          'imagination = no diversity)', 'D2 why', 'dice',
          ('imagination.sample_dynamics=false',), (), 'return_error',
          BETTER),
    # Decision 6: warmup.
    Claim('warmup_1k', 'warmup',
          'Simple env (CartPole): 1K sufficient; simple environment -> '
          'reduce to 1K', 'D6 choice; summary', 'grid',
          ('warmup.steps=4000',), ('warmup.steps=1000',), 'eval_return',
          NO_WORSE),
    Claim('no_warmup', 'warmup', 'No warmup: very simple environments',
          'D6 alt 1 when', 'grid', ('warmup.steps=4000',),
          ('warmup.steps=0',), 'eval_return', NO_WORSE),
    Claim('no_warmup_randomization', 'warmup',
          'No warmup: strong domain randomization (policy must be robust '
          'anyway)', 'D6 alt 1 when',
          missing='no domain-randomised environment in the lab'),
    Claim('no_warmup_patience', 'warmup',
          'No warmup: if warmup too slow for your patience', 'D6 alt 1 when',
          untestable='it is about the user, not the agent (warmup_1k and '
          'no_warmup measure what a shorter warmup costs)'),
    Claim('gradual_errors', 'warmup',
          'Gradual mixing: when the world model has persistent errors; WM '
          'has errors -> add gradual mixing', 'D6 alt 2 when; summary',
          'dice', POINT, POINT + ('warmup.type=gradual',), 'eval_return',
          BETTER),
    Claim('gradual_mbpo', 'warmup', 'Gradual mixing: MBPO uses this',
          'D6 alt 2 when', untestable=CITATION),
    Claim('phased_warmup', 'warmup',
          'Conservative warmup: very sensitive environments',
          'D6 alt 3 when',
          missing='no lab environment that is sensitive to the warmup'),
    Claim('phased_debugging', 'warmup',
          'Conservative warmup: research code; debugging training issues',
          'D6 alt 3 when', untestable=SOFTWARE),
    Claim('warmup_10k', 'warmup',
          'Complex env (Humanoid): 10K+ needed; complex environment -> '
          'increase to 10K', 'D6 choice; summary',
          missing='no complex environment in the lab'),
    Claim('warmup_rule', 'warmup',
          'Rule of thumb: enough warmup for dynamics_loss < 0.5',
          'D6 choice',
          missing="a loss scale: wm_tf's dynamics loss is an NLL, whose "
          'value depends on the latent and its std, so a fixed bar has no '
          'meaning across models'),
)
