__version__ = "0.1.0"

# Every chapter, in the order the data flows, so that importing the package (or any one chapter: Python runs this
# file first) fills every registry: the 'sgld' optimizer (privacy), the curvature recorder (memorization), the
# unlearners, the experiments. A Dask worker that unpickles a function of one chapter gets them all, as timm's
# `create_model` finds every model. Nothing here sets threads or touches torch's state.
from . import core, data, models, privacy, memorization, localization, unlearning, metrics, experiment, tuning, report, reproduce
