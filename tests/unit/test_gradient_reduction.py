import pytest

import jobs  # noqa: F401  (sets the Keras environment before TensorFlow loads)


def sgd_step(gradient_dtype: str, gradient: float) -> float:
    """One plain SGD step (rate 1) from 0 under the default strategy: one replica."""
    import tensorflow as tf
    import tf_keras as keras

    from jobs.lib.gradient_reduction import sum_gradients_in

    variable = tf.Variable(0.0)
    optimizer = sum_gradients_in(keras.optimizers.SGD(1.0), gradient_dtype)
    optimizer.apply_gradients([(tf.constant(gradient), variable)])
    return float(variable.numpy())


def test_one_replica_keeps_its_float32_gradients_under_the_bfloat16_setting():
    # bfloat16 keeps 8 bits of mantissa: 1.001 would round to 1.0
    assert sgd_step("bfloat16", 1.001) == pytest.approx(-1.001, abs=1e-6)
    assert sgd_step("float32", 1.001) == pytest.approx(-1.001, abs=1e-6)


def test_an_unknown_dtype_is_refused():
    with pytest.raises(ValueError, match="float32, bfloat16"):
        sgd_step("int8", 1.0)
