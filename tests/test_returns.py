"""Tests for wm_tf/returns.py against independent float64 NumPy references."""

import numpy as np
import pytest
import tensorflow as tf

from wm_tf import returns

ATOL = 1e-4
RTOL = 1e-5

SHAPES = [(1, 1), (3, 4), (5, 12), (2, 33)]
LAMBDAS = [0.0, 0.3, 0.95, 1.0]


def _inputs(batch, horizon, seed, terminal_prob=0.15):
    """Random rewards [B, H], values [B, H+1], discounts [B, H] as float64.

    Discounts are gamma * continue with a random gamma per entry and some
    terminal (zero-discount) transitions.
    """
    rng = np.random.default_rng(seed)
    rewards = rng.normal(size=(batch, horizon))
    values = rng.normal(scale=3.0, size=(batch, horizon + 1))
    cont = rng.random((batch, horizon)) > terminal_prob
    discounts = rng.uniform(0.8, 1.0, size=(batch, horizon)) * cont
    return rewards, values, discounts


# --------------------------------------------------------------------------
# Plain NumPy references, one output element at a time.


def ref_lambda(rewards, values, discounts, lam):
    batch, horizon = rewards.shape
    out = np.zeros((batch, horizon))
    for b in range(batch):
        ret = values[b, horizon]
        for t in reversed(range(horizon)):
            ret = rewards[b, t] + discounts[b, t] * (
                (1 - lam) * values[b, t + 1] + lam * ret)
            out[b, t] = ret
    return out


def ref_n_step(rewards, values, discounts, n):
    batch, horizon = rewards.shape
    out = np.zeros((batch, horizon))
    for b in range(batch):
        for t in range(horizon):
            steps = min(n, horizon - t)
            total, weight = 0.0, 1.0
            for k in range(steps):
                total += weight * rewards[b, t + k]
                weight *= discounts[b, t + k]
            out[b, t] = total + weight * values[b, t + steps]
    return out


def ref_monte_carlo(rewards, discounts, bootstrap):
    batch, horizon = rewards.shape
    out = np.zeros((batch, horizon))
    for b in range(batch):
        for t in range(horizon):
            total, weight = 0.0, 1.0
            for k in range(t, horizon):
                total += weight * rewards[b, k]
                weight *= discounts[b, k]
            out[b, t] = total + weight * bootstrap[b]
    return out


def ref_gae(rewards, values, discounts, lam):
    batch, horizon = rewards.shape
    adv = np.zeros((batch, horizon))
    for b in range(batch):
        for t in range(horizon):
            # A_t = sum_k (prod_{j<k} d_{t+j} lambda) delta_{t+k}
            weight = 1.0
            for k in range(t, horizon):
                delta = (rewards[b, k] + discounts[b, k] * values[b, k + 1]
                         - values[b, k])
                adv[b, t] += weight * delta
                weight *= discounts[b, k] * lam
    return adv, adv + values[:, :-1]


def _close(actual, expected):
    actual = np.asarray(actual)
    assert actual.dtype == np.float32
    assert actual.shape == np.shape(expected)
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL)


# --------------------------------------------------------------------------
# Each estimator against its reference.


def test_lambda_reference_is_weighted_average_of_n_step_references():
    # Checks the recursive reference against the forward-view definition
    # R_t = (1-l) sum_{n=1}^{m-1} l^{n-1} G^n_t + l^{m-1} G^m_t, m = H - t.
    rewards, values, discounts = _inputs(3, 6, seed=0)
    lam = 0.7
    horizon = rewards.shape[1]
    n_step = {n: ref_n_step(rewards, values, discounts, n)
              for n in range(1, horizon + 1)}
    expected = np.zeros_like(rewards)
    for t in range(horizon):
        m = horizon - t
        expected[:, t] = lam ** (m - 1) * n_step[m][:, t]
        for n in range(1, m):
            expected[:, t] += (1 - lam) * lam ** (n - 1) * n_step[n][:, t]
    np.testing.assert_allclose(
        ref_lambda(rewards, values, discounts, lam), expected, atol=1e-12)


@pytest.mark.parametrize("batch,horizon", SHAPES)
@pytest.mark.parametrize("lam", LAMBDAS)
def test_lambda_returns_matches_reference(batch, horizon, lam):
    rewards, values, discounts = _inputs(batch, horizon, seed=batch * horizon)
    _close(returns.lambda_returns(rewards, values, discounts, lam),
           ref_lambda(rewards, values, discounts, lam))


@pytest.mark.parametrize("batch,horizon", SHAPES)
def test_monte_carlo_returns_matches_reference(batch, horizon):
    rewards, values, discounts = _inputs(batch, horizon, seed=horizon)
    bootstrap = values[:, -1]
    _close(returns.monte_carlo_returns(rewards, discounts, bootstrap),
           ref_monte_carlo(rewards, discounts, bootstrap))


@pytest.mark.parametrize("batch,horizon", SHAPES)
@pytest.mark.parametrize("n", [1, 2, 5, 40])
def test_n_step_returns_matches_reference(batch, horizon, n):
    rewards, values, discounts = _inputs(batch, horizon, seed=n + horizon)
    _close(returns.n_step_returns(rewards, values, discounts, n),
           ref_n_step(rewards, values, discounts, n))


@pytest.mark.parametrize("batch,horizon", SHAPES)
@pytest.mark.parametrize("lam", LAMBDAS)
def test_gae_matches_reference(batch, horizon, lam):
    rewards, values, discounts = _inputs(batch, horizon, seed=7 * horizon)
    advantages, targets = returns.gae(rewards, values, discounts, lam)
    expected_adv, expected_ret = ref_gae(rewards, values, discounts, lam)
    _close(advantages, expected_adv)
    _close(targets, expected_ret)


# --------------------------------------------------------------------------
# Closed forms and identities between estimators.


def test_lambda_one_is_discounted_sum_plus_discounted_bootstrap():
    rewards, values, discounts = _inputs(4, 9, seed=11)
    horizon = rewards.shape[1]
    expected = np.zeros_like(rewards)
    for t in range(horizon):
        # weights[k] = d_t ... d_{t+k-1}, with weights[0] = 1.
        weights = np.cumprod(
            np.concatenate([np.ones((4, 1)), discounts[:, t:]], axis=1),
            axis=1)
        expected[:, t] = ((weights[:, :-1] * rewards[:, t:]).sum(axis=1)
                          + weights[:, -1] * values[:, -1])
    _close(returns.lambda_returns(rewards, values, discounts, 1.0), expected)


def test_lambda_zero_is_one_step_td_target():
    rewards, values, discounts = _inputs(4, 9, seed=12)
    expected = rewards + discounts * values[:, 1:]
    _close(returns.lambda_returns(rewards, values, discounts, 0.0), expected)


def test_docstring_example():
    got = returns.lambda_returns(
        tf.ones([2, 3]), tf.zeros([2, 4]), tf.fill([2, 3], 0.5), 1.0)
    _close(got, np.tile([[1.75, 1.5, 1.0]], (2, 1)))


@pytest.mark.parametrize("kind", returns.RETURN_TYPES)
def test_zero_discount_cuts_the_sum(kind):
    rewards, values, discounts = _inputs(3, 8, seed=13, terminal_prob=0.0)
    cut = 4
    discounts[:, cut] = 0.0
    targets = returns.value_targets(
        kind, rewards, values, discounts, lambda_=0.8, n=3)
    # Where d_t = 0 the target is the reward alone, whatever comes after.
    _close(targets[:, cut], rewards[:, cut])
    # Nothing after the cut reaches the targets before it: perturb the later
    # rewards and values, keep everything up to the cut.
    rng = np.random.default_rng(14)
    rewards2, values2 = rewards.copy(), values.copy()
    rewards2[:, cut + 1:] += rng.normal(size=rewards2[:, cut + 1:].shape)
    values2[:, cut + 1:] += rng.normal(size=values2[:, cut + 1:].shape)
    targets2 = returns.value_targets(
        kind, rewards2, values2, discounts, lambda_=0.8, n=3)
    _close(targets2[:, :cut + 1], np.asarray(targets)[:, :cut + 1])
    # Sanity check that the perturbation does change the later targets.
    assert not np.allclose(targets2[:, cut + 1:], targets[:, cut + 1:])


def test_all_zero_discounts_give_rewards():
    rewards, values, _ = _inputs(2, 5, seed=15)
    discounts = np.zeros_like(rewards)
    for kind in returns.RETURN_TYPES:
        _close(returns.value_targets(kind, rewards, values, discounts),
               rewards)


@pytest.mark.parametrize("lam", LAMBDAS)
def test_gae_returns_equal_lambda_returns(lam):
    rewards, values, discounts = _inputs(4, 10, seed=16)
    advantages, targets = returns.gae(rewards, values, discounts, lam)
    lambda_targets = returns.lambda_returns(rewards, values, discounts, lam)
    _close(targets, lambda_targets)
    _close(advantages, np.asarray(lambda_targets) - values[:, :-1])


@pytest.mark.parametrize("extra", [0, 3])
def test_n_step_beyond_horizon_equals_monte_carlo(extra):
    rewards, values, discounts = _inputs(3, 7, seed=17)
    _close(returns.n_step_returns(rewards, values, discounts, 7 + extra),
           returns.monte_carlo_returns(rewards, discounts, values[:, -1]))


def test_n_step_one_equals_lambda_zero_form():
    rewards, values, discounts = _inputs(3, 7, seed=18)
    _close(returns.n_step_returns(rewards, values, discounts, 1),
           rewards + discounts * values[:, 1:])


def test_monte_carlo_equals_lambda_one():
    rewards, values, discounts = _inputs(3, 7, seed=19)
    _close(returns.monte_carlo_returns(rewards, discounts, values[:, -1]),
           returns.lambda_returns(rewards, values, discounts, 1.0))


# --------------------------------------------------------------------------
# Compilation, dtypes, registry, validation.


def test_jit_compile_matches_eager():
    rewards, values, discounts = _inputs(4, 6, seed=20)
    rewards, values, discounts = (
        tf.constant(x, tf.float32) for x in (rewards, values, discounts))

    def all_estimators(rewards, values, discounts, lambda_):
        out = {kind: returns.value_targets(
            kind, rewards, values, discounts, lambda_=lambda_, n=2)
            for kind in returns.RETURN_TYPES}
        out["gae_advantages"] = returns.gae(
            rewards, values, discounts, lambda_)[0]
        return out

    # Dynamic batch, static horizon; lambda_ as a traced tensor.
    compiled = tf.function(all_estimators, jit_compile=True, input_signature=[
        tf.TensorSpec([None, 6], tf.float32),
        tf.TensorSpec([None, 7], tf.float32),
        tf.TensorSpec([None, 6], tf.float32),
        tf.TensorSpec([], tf.float32),
    ])
    eager = all_estimators(rewards, values, discounts, 0.9)
    jitted = compiled(rewards, values, discounts, tf.constant(0.9))
    assert set(jitted) == set(eager)
    for kind in eager:
        _close(jitted[kind], eager[kind])
    # And the compiled numbers agree with the references, not only eager.
    _close(jitted["lambda"], ref_lambda(
        rewards.numpy(), values.numpy(), discounts.numpy(), 0.9))
    _close(jitted["n_step"], ref_n_step(
        rewards.numpy(), values.numpy(), discounts.numpy(), 2))


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int32])
def test_inputs_are_cast_to_float32(dtype):
    rewards, values, discounts = _inputs(2, 5, seed=21)
    rewards, values = np.round(rewards), np.round(values)
    discounts = (discounts > 0).astype(np.float64)
    cast = [x.astype(dtype) for x in (rewards, values, discounts)]
    for kind in returns.RETURN_TYPES:
        got = returns.value_targets(kind, *cast, lambda_=0.5, n=2)
        assert got.dtype == tf.float32
    _close(returns.lambda_returns(*cast, 0.5),
           ref_lambda(rewards, values, discounts, 0.5))
    _close(returns.monte_carlo_returns(cast[0], cast[2], cast[1][:, -1]),
           ref_monte_carlo(rewards, discounts, values[:, -1]))


def test_value_targets_dispatch():
    assert returns.RETURN_TYPES == ("lambda", "monte_carlo", "n_step", "gae")
    rewards, values, discounts = _inputs(3, 8, seed=22)
    expected = {
        "lambda": ref_lambda(rewards, values, discounts, 0.6),
        "monte_carlo": ref_monte_carlo(rewards, discounts, values[:, -1]),
        "n_step": ref_n_step(rewards, values, discounts, 3),
        "gae": ref_gae(rewards, values, discounts, 0.6)[1],
    }
    for kind in returns.RETURN_TYPES:
        _close(returns.value_targets(kind, rewards, values, discounts,
                                     lambda_=0.6, n=3), expected[kind])
    # The defaults are lambda_=0.95 and n=5.
    _close(returns.value_targets("lambda", rewards, values, discounts),
           ref_lambda(rewards, values, discounts, 0.95))
    _close(returns.value_targets("n_step", rewards, values, discounts),
           ref_n_step(rewards, values, discounts, 5))


def test_value_targets_unknown_kind_names_it_and_the_allowed_ones():
    rewards, values, discounts = _inputs(2, 3, seed=23)
    with pytest.raises(ValueError) as error:
        returns.value_targets("td_gamma", rewards, values, discounts)
    message = str(error.value)
    assert "td_gamma" in message
    for kind in returns.RETURN_TYPES:
        assert repr(kind) in message


def test_shape_errors():
    rewards, values, discounts = _inputs(2, 5, seed=24)
    with pytest.raises(ValueError, match=r"H\+1 = 6"):
        returns.lambda_returns(rewards, values[:, :-1], discounts, 0.9)
    with pytest.raises(ValueError, match=r"H\+1 = 6"):
        returns.value_targets("monte_carlo", rewards, values[:, :-1],
                              discounts)
    with pytest.raises(ValueError, match="rewards must have rank 2"):
        returns.gae(rewards[0], values, discounts, 0.9)
    with pytest.raises(ValueError, match="discounts must have the shape"):
        returns.n_step_returns(rewards, values, discounts[:, :-1], 2)
    with pytest.raises(ValueError, match="Batch sizes"):
        returns.lambda_returns(rewards, values[:1], discounts, 0.9)
    with pytest.raises(ValueError, match="bootstrap must have rank 1"):
        returns.monte_carlo_returns(rewards, discounts, values)
    with pytest.raises(ValueError, match="Batch sizes"):
        returns.monte_carlo_returns(rewards, discounts, values[:1, -1])
    with pytest.raises(ValueError, match="n must be"):
        returns.n_step_returns(rewards, values, discounts, 0)
    with pytest.raises(ValueError, match="lambda_ must be in"):
        returns.lambda_returns(rewards, values, discounts, 1.5)


def test_dynamic_horizon_is_rejected():
    fn = tf.function(
        lambda r, v, d: returns.lambda_returns(r, v, d, 0.9),
        input_signature=[tf.TensorSpec([None, None], tf.float32)] * 3)
    with pytest.raises(ValueError, match="must be static"):
        fn.get_concrete_function()
