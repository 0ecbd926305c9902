"""xe_verify: a float64 reference for entropy, cross-entropy and binary cross-entropy that mirrors torch.

Modules
-------
functional
    ``cross_entropy``, ``nll_loss``, ``binary_cross_entropy``, ``binary_cross_entropy_with_logits``, ``kl_div`` and
    the softmax family, with ``torch.nn.functional``'s exact semantics.
information
    Entropy, cross-entropy and KL divergence of probability vectors, in any log base.
strategies
    Hypothesis strategies for testing loss implementations (needs ``hypothesis``).
"""

__version__ = "0.1.0"
