"""A Kubernetes of real components with two nodes (or one: `--nodes 1`), started by the project without
Docker (`make cluster-up`): etcd, kube-apiserver and kube-controller-manager (the control plane of
`devservers/controlplane.py`, in cluster mode), kube-scheduler, and per node containerd + runc + CNI bridge
(Debian packages), kubelet and kube-proxy; CoreDNS and the KubeRay operator in the cluster, and a Kafka
broker and a MinIO server on node 1's address for the fleets (bring-your-own, as the stack chart allows).
Node 2 runs in a network namespace of its own and is labelled and tainted as a GPU pool. See `plan.py`
for the addresses and the guard that keeps Pod traffic on this machine, `network.py` for how they are
set up, `node.py` for the node processes, `teardown.py` for `down`.
"""
