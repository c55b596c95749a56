// Package kubernetes holds vrss's Kubernetes manifests, the YAML files in
// its directory (see the README's "Kubernetes and KubeVirt"), and the test
// that decodes them strictly. It has no code.
package kubernetes
