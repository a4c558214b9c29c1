"""An example fedsec plug-in package: importing it registers its methods (the entry point
``fedsec.plugins: example = fedsec_example_plugin`` makes fedsec import it)."""

from fedsec_example_plugin import norm_outlier, random_direction  # noqa: F401  (register)
