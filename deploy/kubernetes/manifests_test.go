package kubernetes

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// The KubeVirt and Multus types are not served by the module proxy this
// project builds with (kubevirt.io/api and the
// network-attachment-definition client are not), so these structs mirror
// the fields of theirs the manifests use, with the same JSON names: a
// field they do not name fails the decoding as an unknown one would.

// object is a top-level object whose spec is S.
type object[S any] struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            S                 `json:"spec"`
}

// kubeVirt mirrors kubevirt.io/api/core/v1.KubeVirt, for the binding
// registration.
type kubeVirt = object[struct {
	Configuration struct {
		Network struct {
			// Binding mirrors map[string]InterfaceBindingPlugin.
			Binding map[string]struct {
				DomainAttachmentType        string `json:"domainAttachmentType,omitempty"`
				SidecarImage                string `json:"sidecarImage,omitempty"`
				NetworkAttachmentDefinition string `json:"networkAttachmentDefinition,omitempty"`
			} `json:"binding"`
		} `json:"network"`
	} `json:"configuration"`
}]

// virtualMachine mirrors kubevirt.io/api/core/v1.VirtualMachine.
type virtualMachine = object[struct {
	RunStrategy string `json:"runStrategy"`
	Template    struct {
		Metadata metav1.ObjectMeta `json:"metadata"`
		Spec     struct {
			Domain struct {
				CPU struct {
					Cores uint32 `json:"cores"`
				} `json:"cpu"`
				Memory struct {
					Guest *resource.Quantity `json:"guest"`
				} `json:"memory"`
				Devices struct {
					NetworkInterfaceMultiqueue *bool `json:"networkInterfaceMultiqueue"`
					Disks                      []struct {
						Name string `json:"name"`
						Disk struct {
							Bus string `json:"bus"`
						} `json:"disk"`
					} `json:"disks"`
					Interfaces []struct {
						Name       string    `json:"name"`
						Masquerade *struct{} `json:"masquerade,omitempty"`
						Binding    *struct {
							Name string `json:"name"`
						} `json:"binding,omitempty"`
					} `json:"interfaces"`
				} `json:"devices"`
			} `json:"domain"`
			Networks []vmNetwork `json:"networks"`
			Volumes  []struct {
				Name          string `json:"name"`
				ContainerDisk struct {
					Image string `json:"image"`
				} `json:"containerDisk"`
			} `json:"volumes"`
		} `json:"spec"`
	} `json:"template"`
}]

// vmNetwork mirrors kubevirt.io/api/core/v1.Network.
type vmNetwork struct {
	Name   string    `json:"name"`
	Pod    *struct{} `json:"pod,omitempty"`
	Multus *struct {
		NetworkName string `json:"networkName"`
	} `json:"multus,omitempty"`
}

// networkAttachmentDefinition mirrors the network-attachment-definition
// client's k8s.cni.cncf.io/v1 NetworkAttachmentDefinition.
type networkAttachmentDefinition = object[struct {
	Config string `json:"config"`
}]

// cniConfig mirrors vrss-cni's network configuration (docs/cni.md).
type cniConfig struct {
	CNIVersion   string          `json:"cniVersion"`
	Name         string          `json:"name"`
	Type         string          `json:"type"`
	Capabilities map[string]bool `json:"capabilities,omitempty"`
	Socket       string          `json:"socket,omitempty"`
	Queues       *int            `json:"queues,omitempty"`
	Owner        *int            `json:"owner,omitempty"`
	Group        *int            `json:"group,omitempty"`
	VnetHdrLen   *int            `json:"vnetHdrLen,omitempty"`
	RSS          json.RawMessage `json:"rss,omitempty"`
}

// kinds are the objects the manifests may hold, by apiVersion and kind.
var kinds = map[string]func() any{
	"v1 Namespace":                                   func() any { return &corev1.Namespace{} },
	"apps/v1 DaemonSet":                              func() any { return &appsv1.DaemonSet{} },
	"kubevirt.io/v1 KubeVirt":                        func() any { return &kubeVirt{} },
	"kubevirt.io/v1 VirtualMachine":                  func() any { return &virtualMachine{} },
	"k8s.cni.cncf.io/v1 NetworkAttachmentDefinition": func() any { return &networkAttachmentDefinition{} },
}

// strict decodes JSON into v as the API server does: field names are
// case-sensitive (encoding/json's Decoder, even with
// DisallowUnknownFields, takes "hostnetwork" for hostNetwork), and unknown
// or duplicate fields are errors.
func strict(data []byte, v any) error {
	serrs, err := kjson.UnmarshalStrict(data, v, kjson.DisallowUnknownFields, kjson.DisallowDuplicateFields)
	if err != nil {
		return err
	}
	return errors.Join(serrs...)
}

// decode decodes every document of a YAML file strictly into its type;
// a NetworkAttachmentDefinition's config is decoded strictly too.
func decode(data []byte) ([]any, error) {
	var objs []any
	for i, doc := range strings.Split(string(data), "\n---") {
		// Duplicate keys are an error too.
		js, err := yaml.YAMLToJSONStrict([]byte(doc))
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		if string(js) == "null" {
			continue // comments only
		}
		var tm metav1.TypeMeta
		if err := json.Unmarshal(js, &tm); err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		mk := kinds[tm.APIVersion+" "+tm.Kind]
		if mk == nil {
			return nil, fmt.Errorf("document %d: no type for %s %s", i+1, tm.APIVersion, tm.Kind)
		}
		obj := mk()
		if err := strict(js, obj); err != nil {
			return nil, fmt.Errorf("document %d (%s): %w", i+1, tm.Kind, err)
		}
		if nad, ok := obj.(*networkAttachmentDefinition); ok {
			var c cniConfig
			if err := strict([]byte(nad.Spec.Config), &c); err != nil {
				return nil, fmt.Errorf("document %d: spec.config: %w", i+1, err)
			}
		}
		objs = append(objs, obj)
	}
	return objs, nil
}

// manifests decodes every YAML file here, by file name.
func manifests(t *testing.T) map[string][]any {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	out := map[string][]any{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := decode(data)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		out[f] = objs
	}
	return out
}

// only returns the one object of type T among all the manifests.
func only[T any](t *testing.T, all map[string][]any) T {
	t.Helper()
	var found []T
	for _, objs := range all {
		for _, o := range objs {
			if v, ok := o.(T); ok {
				found = append(found, v)
			}
		}
	}
	if len(found) != 1 {
		var zero T
		t.Fatalf("%d objects of type %T in the manifests, want 1", len(found), zero)
	}
	return found[0]
}

// TestManifests decodes every manifest strictly and checks that they fit
// together: the binding the VM names is registered as a tap attachment,
// its network is the NetworkAttachmentDefinition of vrss-cni, whose TAP
// has as many queues as the VM has vCPUs; the DaemonSet installs the
// plugin, serves metrics on the port its probes use, and has exactly the
// capabilities vrssd needs.
func TestManifests(t *testing.T) {
	all := manifests(t)
	if t.Failed() {
		return
	}
	kv := only[*kubeVirt](t, all)
	vm := only[*virtualMachine](t, all)
	nad := only[*networkAttachmentDefinition](t, all)
	ds := only[*appsv1.DaemonSet](t, all)
	ns := only[*corev1.Namespace](t, all)

	var cni cniConfig
	json.Unmarshal([]byte(nad.Spec.Config), &cni)
	if cni.Type != "vrss-cni" || cni.Queues == nil || cni.Owner == nil || *cni.Owner != 107 {
		t.Errorf("the NetworkAttachmentDefinition's config: %+v", cni)
	}
	tmpl := vm.Spec.Template.Spec
	var bound int
	for _, ifc := range tmpl.Domain.Devices.Interfaces {
		if ifc.Binding == nil {
			continue
		}
		bound++
		b, ok := kv.Spec.Configuration.Network.Binding[ifc.Binding.Name]
		if !ok || b.DomainAttachmentType != "tap" || b.SidecarImage != "" {
			t.Errorf("interface %s: binding %q registered as %+v (found %v), want a tap attachment", ifc.Name, ifc.Binding.Name, b, ok)
		}
		i := slices.IndexFunc(tmpl.Networks, func(n vmNetwork) bool { return n.Name == ifc.Name })
		if i < 0 || tmpl.Networks[i].Multus == nil || tmpl.Networks[i].Multus.NetworkName != nad.Metadata.Name {
			t.Errorf("interface %s: its network is not the NetworkAttachmentDefinition %s", ifc.Name, nad.Metadata.Name)
		}
	}
	if bound != 1 {
		t.Errorf("%d interfaces of the VM use a binding, want 1", bound)
	}
	if mq := tmpl.Domain.Devices.NetworkInterfaceMultiqueue; mq == nil || !*mq || cni.Queues == nil || uint32(*cni.Queues) != tmpl.Domain.CPU.Cores {
		t.Errorf("multiqueue %v with %d vCPUs, and a TAP of %v queues: KubeVirt opens one queue per vCPU", mq, tmpl.Domain.CPU.Cores, cni.Queues)
	}
	if vm.Metadata.Namespace != nad.Metadata.Namespace {
		t.Errorf("the VM is in namespace %q, the NetworkAttachmentDefinition in %q", vm.Metadata.Namespace, nad.Metadata.Namespace)
	}

	if ds.Namespace != ns.Name || ns.Labels["pod-security.kubernetes.io/enforce"] != "privileged" {
		t.Errorf("the DaemonSet's namespace %q, namespace %s labels %v", ds.Namespace, ns.Name, ns.Labels)
	}
	pod := ds.Spec.Template.Spec
	if !pod.HostNetwork || pod.HostPID || len(pod.Containers) != 1 || len(pod.InitContainers) != 1 {
		t.Fatalf("the DaemonSet's pod: hostNetwork %v, hostPID %v, %d containers, %d init containers", pod.HostNetwork, pod.HostPID, len(pod.Containers), len(pod.InitContainers))
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("a service account token is mounted, and vrssd talks to no API server")
	}
	c, ic := pod.Containers[0], pod.InitContainers[0]
	if c.Image != ic.Image {
		t.Errorf("images %s and %s: the plugin must come with its vrssd", c.Image, ic.Image)
	}
	mounts := func(c corev1.Container) map[string]string {
		m := map[string]string{}
		for _, vm := range c.VolumeMounts {
			m[vm.MountPath] = vm.Name
		}
		return m
	}
	hostPaths := map[string]string{}
	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	if len(ic.Args) != 2 || ic.Args[0] != "--install-cni" || hostPaths[mounts(ic)[ic.Args[1]]] != "/opt/cni/bin" {
		t.Errorf("init container: args %q, mounts %v: want --install-cni into the host's /opt/cni/bin", ic.Args, mounts(ic))
	}
	for path, host := range map[string]string{"/run/vrss": "/run/vrss", "/var/lib/vrss": "/var/lib/vrss", "/sys/fs/bpf": "/sys/fs/bpf", "/run/netns": "/run/netns", "/var/run/netns": "/run/netns"} {
		if got := hostPaths[mounts(c)[path]]; got != host {
			t.Errorf("vrssd's %s is the host's %q, want %s", path, got, host)
		}
	}
	var metrics string
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--metrics="); ok {
			metrics = v
		}
	}
	_, port, err := net.SplitHostPort(metrics)
	if err != nil || len(c.Ports) != 1 || fmt.Sprint(c.Ports[0].ContainerPort) != port {
		t.Errorf("--metrics %q (%v), ports %+v", metrics, err, c.Ports)
	}
	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Port.String() != c.Ports[0].Name {
			t.Errorf("%s probe %+v: want an HTTP probe on the metrics port", name, p)
		}
	}
	if c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("probes on %s and %s", c.LivenessProbe.HTTPGet.Path, c.ReadinessProbe.HTTPGet.Path)
	}
	sc := c.SecurityContext
	var added []string
	for _, cp := range sc.Capabilities.Add {
		added = append(added, string(cp))
	}
	slices.Sort(added)
	if sc.Privileged != nil && *sc.Privileged || !slices.Equal(added, []string{"BPF", "NET_ADMIN", "PERFMON", "SYS_ADMIN"}) ||
		!slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("vrssd's security context: %+v, capabilities %+v", sc, sc.Capabilities)
	}
}

// TestManifestTypos: a misspelt field, in each kind of manifest and in
// the plugin's configuration, fails the decoding.
func TestManifestTypos(t *testing.T) {
	for _, tc := range []struct{ file, field, typo string }{
		{"vrssd.yaml", "mountPropagation:", "mountPropogation:"},
		{"vrssd.yaml", "readOnlyRootFilesystem:", "readOnlyRootFileSystem:"},
		{"namespace.yaml", "labels:", "label:"},
		{"virtualmachine.yaml", "networkInterfaceMultiqueue:", "networkInterfaceMultiQueue:"},
		{"virtualmachine.yaml", "networkName:", "network:"},
		{"kubevirt-binding.yaml", "domainAttachmentType:", "domainAttachementType:"},
		{"network-attachment-definition.yaml", `"queues"`, `"queue"`},
	} {
		data, err := os.ReadFile(tc.file)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(typo(data, tc.field, tc.typo), data) {
			t.Errorf("%s has no %s", tc.file, tc.field)
			continue
		}
		if _, err := decode(typo(data, tc.field, tc.typo)); err == nil || !strings.Contains(err.Error(), "unknown field") {
			t.Errorf("%s with %s for %s: %v, want an unknown field", tc.file, tc.typo, tc.field, err)
		}
	}
}

// typo replaces field with typo where it is first a key (or, in the
// plugin's JSON, a quoted name), not in a comment.
func typo(data []byte, field, typo string) []byte {
	lines := strings.Split(string(data), "\n")
	for i, l := range lines {
		key := strings.TrimLeft(l, " -")
		if strings.HasPrefix(key, field) {
			lines[i] = strings.Replace(l, field, typo, 1)
			break
		}
	}
	return []byte(strings.Join(lines, "\n"))
}
