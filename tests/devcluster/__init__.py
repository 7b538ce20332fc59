"""A local Kubernetes control plane for tests: etcd, kube-apiserver, controller-manager,
scheduler, KWOK fake GPU nodes, and the JobSet and Kueue controllers, all built from the
Go module proxy and run as local processes (no Docker)."""
