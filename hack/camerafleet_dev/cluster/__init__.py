"""A one-node Kubernetes of real components, started by the project without Docker (`make cluster-up`):
etcd, kube-apiserver and kube-controller-manager (the control plane of `devservers/controlplane.py`, in
cluster mode), containerd + runc + CNI bridge (Debian packages), kubelet, kube-scheduler and kube-proxy,
CoreDNS and the KubeRay operator in the cluster, and a Kafka broker and a MinIO server on the node's
address for the fleets (bring-your-own, as the stack chart allows). See `network.py` for the addresses
and the guard that keeps Pod traffic on this machine.
"""
