"""ftops: GitOps tooling for LLaMA-Factory fine-tuning experiments."""

__version__ = "0.1.0"
