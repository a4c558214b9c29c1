"""Client behaviours: the honest client and the attacks and defenses that wrap it. Importing the
package registers them (``fedsec.plugins`` entry point ``clients``)."""

from clients import attacks, creff, defenses, redgrape  # noqa: E402,F401  (register the training steps)
from clients.honest import DATA_FILTERS, LOCAL_TRAININGS, DataFilter, HonestClient, LocalTraining
from clients.roles import build_client  # noqa: E402

__all__ = ["DATA_FILTERS", "LOCAL_TRAININGS", "DataFilter", "HonestClient", "LocalTraining", "build_client"]
