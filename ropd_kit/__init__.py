"""ropd-kit: Rubric-based On-Policy Distillation.

Stages (one module each, see the repository's DESIGN notes): teacher references -> rubric induction ->
blind verification -> scores -> GRPO. Importing the package is cheap: heavy libraries (torch, transformers,
trl, unsloth) are imported inside the functions that need them.
"""

__version__ = "0.1.0"
