"""Manifests: RunSpec -> Kustomize overlays, built objects, validation, plan, PR comment."""
