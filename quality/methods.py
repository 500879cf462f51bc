"""Names of the aggregation methods a project can choose (import-light: no numpy, no crowd-kit)."""

METHODS = (
    "dawid_skene",
    "majority_vote",
    "wawa",
    "glad",
    "mace",
    "one_coin_dawid_skene",
)
DEFAULT_METHOD = "dawid_skene"
