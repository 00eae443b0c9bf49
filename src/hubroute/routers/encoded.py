"""Shared by the routers that embed text with one frozen encoder (dense card retrieval, prompt
centroids): the encoder given as an object or as a name loaded on first use."""

from __future__ import annotations

from hubroute.encoders import Encoder, load_encoder, resolve_profile


class FrozenEncoderMixin:
    """Holds ``encoder`` (an :class:`~hubroute.encoders.Encoder`, or a name for
    :func:`~hubroute.encoders.load_encoder` resolved on first use)."""

    def _set_encoder(self, encoder: Encoder | str) -> None:
        if isinstance(encoder, str):
            encoder = resolve_profile(encoder)
        self._encoder = encoder
        self.encoder_name = encoder if isinstance(encoder, str) else encoder.name

    @property
    def encoder(self) -> Encoder:
        """The encoder, loaded on first use when it was given by name."""
        if isinstance(self._encoder, str):
            self._encoder = load_encoder(self._encoder)
        return self._encoder

    def encoders(self) -> list[Encoder]:
        return [self.encoder]

    def encoder_param(self) -> str:
        """The encoder's name as a constructor argument (without the cache's dtype / length tags)."""
        if isinstance(self._encoder, str):
            return self._encoder
        return getattr(self._encoder, "spec", None) or self.encoder_name.split("|")[0]
