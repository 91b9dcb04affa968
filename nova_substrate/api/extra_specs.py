"""Validators for the ``substrate:`` flavor extra specs.

Registered with Nova through the ``nova.api.extra_spec_validators`` entry
point, so from microversion 2.86 the API refuses, with HTTP 400, a
``substrate:`` key it does not know and a value of the wrong type.
"""

from nova.api.validation.extra_specs import base

from nova_substrate import substrate_key

EXTRA_SPEC_VALIDATORS = [
    base.ExtraSpecValidator(
        name=substrate_key.ENABLED,
        description=(
            'Whether instances of this flavor are activated from a docked '
            'substrate instead of booted, where a host holds one.'),
        value={'type': bool},
    ),
    base.ExtraSpecValidator(
        name=substrate_key.FALLBACK,
        description=(
            'Whether an instance of a substrate flavor boots normally when '
            'no host holds a matching substrate (the default). With false '
            'it fails with a fault saying no host holds one.'),
        value={'type': bool},
    ),
]


def register():
    return EXTRA_SPEC_VALIDATORS
