"""The plugin's own Keras layer."""

from tensorflow import keras


class Scale(keras.layers.Layer):
    """Multiplies each channel by a learned factor."""

    def __init__(self, init: float = 1.0, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.init = init

    def build(self, input_shape: tuple[int, ...]) -> None:
        self.factor = self.add_weight(
            shape=(input_shape[-1],), initializer=keras.initializers.Constant(self.init), name="factor"
        )

    def call(self, x: object) -> object:
        return x * self.factor

    def get_config(self) -> dict[str, object]:
        return {**super().get_config(), "init": self.init}
