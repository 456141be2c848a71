"""The claims of the design (../shared/DESIGN.md) that the design lab checks.

Each `Claim` quotes one "when to use" item, "Consider alternatives" line or
summary-table row, names the lab environment it is about, the baseline's
and the alternative's overrides of benchmarks/design_lab.yaml, the measure
that decides it and what the claim predicts for the alternative. A claim that
needs something wm_tf or the lab lacks has `missing` set and no runs.
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
  env: str = ''  # a key of benchmarks.design_lab.LAB_ENVS
  baseline: Tuple[str, ...] = ()
  alternative: Tuple[str, ...] = ()
  measure: str = 'eval_return'
  predicts: str = NO_WORSE
  missing: Optional[str] = None  # why it cannot be measured here


POINT = ('dynamics.type=deterministic',)
MC = ('returns.type=monte_carlo',)
LONG_HORIZON = ('imagination.horizon=45',)

CLAIMS = (
    # Decision 1: optimizers.
    Claim('single_optimizer', 'optimizers',
          'Single optimizer: gradient pollution (WM sees RL gradients) '
          'could hurt WM quality', 'grid', (), ('optimizers.type=single',),
          'energy', WORSE),
    Claim('single_optimizer_simple', 'optimizers',
          'Need extreme simplicity -> single optimizer (small projects)',
          'grid', (), ('optimizers.type=single',), 'eval_return', NO_WORSE),
    Claim('masked_optimizer', 'optimizers',
          'Gradient masking: same effect as separate optimizers', 'grid',
          (), ('optimizers.type=masked',), 'eval_return', SAME),
    Claim('target_network', 'optimizers',
          'Target networks: large world models, or actor training unstable',
          missing='no lab environment with a large world model or an '
          'unstable actor (world_model.target exists: copy, ema)'),
    # Decision 2: distributions.
    Claim('point_grid', 'distributions',
          'Point estimates: deterministic environments (GridWorld)', 'grid',
          (), POINT, 'eval_return', NO_WORSE),
    Claim('point_grid_model', 'distributions',
          'Point estimates: deterministic environments (GridWorld), the '
          'model', 'grid', (), POINT, 'energy', NO_WORSE),
    Claim('dice_distributions', 'distributions',
          'Dice games: DEFINITELY need distributions', 'dice', POINT, (),
          'energy', BETTER),
    Claim('dice_distributions_return', 'distributions',
          'Dice games: DEFINITELY need distributions (imagined return)',
          'dice', POINT, (), 'return_error', BETTER),
    Claim('point_multimodal', 'distributions',
          'MSE struggles with multimodal dynamics (can go left OR right)',
          'bounce', (), POINT, 'energy', WORSE),
    Claim('mixture_bounce', 'distributions',
          'Mixture: truly multi-modal dynamics (ball could go left OR '
          'right)', 'bounce', (), ('dynamics.type=mixture',), 'energy',
          BETTER),
    Claim('mixture_bounce_return', 'distributions',
          'Env multi-modal -> mixture models (eval return)', 'bounce', (),
          ('dynamics.type=mixture',), 'eval_return', BETTER),
    Claim('mixture_dice', 'distributions',
          'Mixture: complex stochastic environments (6 faces)', 'dice', (),
          ('dynamics.type=mixture', 'dynamics.components=6'), 'energy',
          BETTER),
    Claim('ensemble_ood', 'distributions',
          'Ensemble: can detect out-of-distribution states (high std)',
          'ood', (), ('dynamics.type=ensemble',), 'auroc', BETTER),
    Claim('ensemble_unstable', 'distributions',
          'If training unstable -> try ensembles; need robustness',
          missing='no lab environment whose training is unstable'),
    Claim('noisy_robotics', 'distributions',
          'Robotics with noise: need distributions',
          missing='no robotics environment in the lab'),
    # Decision 3: returns.
    Claim('mc_short', 'returns',
          'Episodes very short (< 50 steps) -> try pure MC', 'corridor_short',
          (), MC, 'value_error', NO_WORSE),
    Claim('mc_short_return', 'returns',
          'Episodes very short (< 50 steps) -> try pure MC (eval return)',
          'corridor_short', (), MC, 'eval_return', NO_WORSE),
    Claim('mc_long', 'returns',
          'Pure MC: high variance -> slow learning (long episodes)',
          'corridor_long', (), MC, 'value_error', WORSE),
    Claim('lambda_095', 'returns', 'lambda = 0.95 works for most tasks',
          'corridor_long', ('returns.lambda=0.99',), (), 'value_error',
          NO_WORSE),
    Claim('lambda_099_bias', 'returns', 'High bias observed -> higher '
          'lambda (0.99)', 'corridor_long', (), ('returns.lambda=0.99',),
          'value_error', BETTER),
    Claim('gae', 'returns', 'GAE would also work (similar performance)',
          'corridor_short', (), ('returns.type=gae',), 'value_error', SAME),
    Claim('n_step', 'returns', 'Fixed-horizon problems -> n-step returns',
          'corridor_short', (), ('returns.type=n_step',), 'value_error',
          NO_WORSE),
    # Decision 4: representation learner.
    Claim('merge_encoder', 'representation',
          'Simple environments (state-based) -> single encoder, no repr '
          'learner', 'grid', (), ('representation_learner.type=none',
                                  'representation_learner.latent_dim=64'),
          'eval_return', NO_WORSE),
    Claim('stochastic_vae', 'representation',
          'Need stochastic -> add VAE/RSSM', 'dice', (),
          ('representation_learner.type=vae',), 'energy', BETTER),
    Claim('hierarchical', 'representation',
          'Hierarchical repr learners: very high-dim observations (videos)',
          missing='wm_tf has no hierarchical representation learner and '
          'the lab no video observations'),
    # Decision 5: imagination.
    Claim('dyna_errors', 'imagination',
          'WM has systematic errors / exploiting errors -> Dyna mixing',
          'dice', POINT, POINT + ('imagination.mode=dyna',), 'eval_return',
          BETTER),
    Claim('symlog_long', 'imagination',
          'Imagination horizon > 15 / long horizon unstable -> symlog',
          'corridor_long', LONG_HORIZON,
          LONG_HORIZON + ('imagination.symlog=true',), 'eval_return',
          BETTER),
    Claim('mpc_small_actions', 'imagination',
          'MPC: small action spaces, accurate world models', 'grid', (),
          ('imagination.mode=mpc',), 'eval_return', NO_WORSE),
    Claim('sampled_imagination', 'imagination',
          'Distributions: sample diverse rollouts (deterministic '
          'imagination = no diversity)', 'dice',
          ('imagination.sample_dynamics=false',), (), 'return_error',
          BETTER),
    Claim('model_free', 'imagination',
          'Model-free only: simple, fast environments; baseline comparison',
          missing='wm_tf has no model-free learner'),
    # Decision 6: warmup.
    Claim('warmup_1k', 'warmup', 'Simple env (CartPole): 1K sufficient',
          'grid', ('warmup.steps=4000',), ('warmup.steps=1000',),
          'eval_return', NO_WORSE),
    Claim('no_warmup', 'warmup', 'No warmup: very simple environments',
          'grid', ('warmup.steps=4000',), ('warmup.steps=0',),
          'eval_return', NO_WORSE),
    Claim('gradual_errors', 'warmup',
          'WM has errors -> add gradual mixing', 'dice', POINT,
          POINT + ('warmup.type=gradual',), 'eval_return', BETTER),
    Claim('warmup_10k', 'warmup', 'Complex env (Humanoid): 10K+ needed',
          missing='no complex environment in the lab'),
    Claim('phased_warmup', 'warmup',
          'Conservative warmup: very sensitive environments, debugging',
          missing='no lab environment that is sensitive to the warmup'),
)
