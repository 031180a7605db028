"""Default config: the embedded labels->photo task, sized to learn visibly on a 2-core CPU.

Every knob of the trainer, with its default, is defined in the package
(`p2p_jax/config/defaults.py`, with the helpers the task files share), so an installed
package reads a run's config.json without this folder; the task files here start from it
and change what differs. Override anything from the command line:
`--config.batch_size=16 --config.model.norm=instance`.
"""

from p2p_jax.config import defaults
from p2p_jax.config.defaults import (
    apply_variant,
    measured_recipe,
    photo_task,
    reference_256,
    scale_to_batch,
)

__all__ = ["apply_variant", "get_config", "measured_recipe", "photo_task", "reference_256",
           "scale_to_batch"]


def get_config(variant: str = ""):
    """The 2017 recipe with what measured to help (`measured_recipe`: R1);
    `configs/default.py:reference`: the 2017 recipe exactly; `:podB`: a global batch of B."""
    return apply_variant(measured_recipe(defaults.get_config()), variant)
