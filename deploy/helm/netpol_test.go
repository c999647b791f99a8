package helm

import (
	"fmt"
	"maps"
	"slices"
	"testing"
)

// The NetworkPolicies: one per component, selecting its pods; in, only the
// component's HTTP port (the API of the writer and the reader, /metrics and
// the probes of all three) from the configured peers; out, DNS and the ports
// of what the component talks to.

// policyFor returns the NetworkPolicies whose pod selector selects the pods
// of Deployment d.
func policiesFor(objs []object, d object) []object {
	podLabels, _ := get(d, "spec", "template", "metadata", "labels").(map[string]any)
	var out []object
	for _, np := range ofKind(objs, "NetworkPolicy") {
		sel := get(np, "spec", "podSelector")
		if get(sel, "matchExpressions") != nil {
			continue // not used by the chart
		}
		ml, _ := get(sel, "matchLabels").(map[string]any)
		selected := true
		for k, v := range ml {
			if podLabels[k] != v {
				selected = false
			}
		}
		if selected {
			out = append(out, np)
		}
	}
	return out
}

// egressPorts returns the "<port>/<protocol>" a policy lets out.
func egressPorts(np object) []string {
	var out []string
	for _, r := range list(np, "spec", "egress") {
		for _, p := range list(r, "ports") {
			n, _ := num(p, "port")
			out = append(out, fmt.Sprintf("%d/%s", n, str(p, "protocol")))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// isWholeNamespace reports whether a peer is every pod of the namespace.
func isWholeNamespace(peer any) bool {
	m, _ := peer.(map[string]any)
	ps, ok := m["podSelector"].(map[string]any)
	return ok && len(m) == 1 && len(ps) == 0
}

// checkNetworkPolicies checks what every rendering with policies must get
// right (called by checkCommon).
func checkNetworkPolicies(t *testing.T, objs []object) {
	t.Helper()
	for _, c := range components {
		d := find(objs, "Deployment", release+"-"+c)
		nps := policiesFor(objs, d)
		if len(nps) != 1 {
			t.Errorf("%s is selected by %d NetworkPolicies, want 1", d, len(nps))
			continue
		}
		np := nps[0]
		if str(np, "apiVersion") != "networking.k8s.io/v1" {
			t.Errorf("%s: apiVersion %s", np, str(np, "apiVersion"))
		}
		if str(np, "spec", "podSelector", "matchLabels", "app.kubernetes.io/component") != c {
			t.Errorf("%s does not select by component: %v", np, get(np, "spec", "podSelector"))
		}
		if types := list(np, "spec", "policyTypes"); !slices.Contains(types, any("Ingress")) || !slices.Contains(types, any("Egress")) {
			t.Errorf("%s: policyTypes %v, want Ingress and Egress", np, types)
		}
		// In: only the container's port, from named peers.
		port, _ := num(d, "spec", "template", "spec", "containers", "0", "ports", "0", "containerPort")
		apiOpen := false
		for _, r := range list(np, "spec", "ingress") {
			if len(list(r, "from")) == 0 {
				t.Errorf("%s: an ingress rule from anywhere: %v", np, r)
			}
			ports := list(r, "ports")
			if len(ports) == 0 {
				t.Errorf("%s: an ingress rule on every port: %v", np, r)
			}
			for _, p := range ports {
				if n, _ := num(p, "port"); n != port || str(p, "protocol") != "TCP" {
					t.Errorf("%s lets in %v, but the container listens on %d/TCP", np, p, port)
				}
			}
			if slices.ContainsFunc(list(r, "from"), isWholeNamespace) {
				apiOpen = true
			}
		}
		if c == "projector" && apiOpen {
			t.Errorf("%s lets the whole namespace in: the projector serves only metrics and probes", np)
		}
		// Out: DNS, and every rule names its ports.
		if !slices.Contains(egressPorts(np), "53/UDP") {
			t.Errorf("%s: no DNS (53/UDP) out: %v", np, egressPorts(np))
		}
		for _, r := range list(np, "spec", "egress") {
			if len(list(r, "ports")) == 0 {
				t.Errorf("%s: an egress rule on every port: %v", np, r)
			}
		}
	}
	if n := len(ofKind(objs, "NetworkPolicy")); n != len(components) {
		t.Errorf("%d NetworkPolicies, want %d", n, len(components))
	}
}

func TestNetworkPolicies(t *testing.T) {
	dns := []string{"53/TCP", "53/UDP"}
	withDNS := func(ports ...string) []string {
		out := append(slices.Clone(dns), ports...)
		slices.Sort(out)
		return out
	}
	for _, tc := range []struct {
		name string
		args []string
		// egress ports per component, and whether the API is open to the namespace
		egress  map[string][]string
		apiOpen bool
	}{
		{"minimal values", minimal, map[string][]string{
			"writer":    withDNS("5432/TCP", "9092/TCP", "443/TCP"),
			"projector": withDNS("9092/TCP", "6379/TCP"),
			"reader":    withDNS("6379/TCP", "443/TCP"),
		}, true},
		// Without the relay the writer still consumes Kafka for the transfers process manager.
		{"OTLP, a JWKS URL with its port, several brokers, no relay", append(slices.Clone(minimal), "--set",
			"otel.endpoint=http://otel-collector.observability:4318,auth.jwksUrl=http://keycloak.iam:8080/realms/t/certs,writer.relay=false,kafka.brokers={k0:9092,k1:9093,k2:9093}"),
			map[string][]string{
				"writer":    withDNS("5432/TCP", "9092/TCP", "9093/TCP", "8080/TCP", "4318/TCP"),
				"projector": withDNS("9092/TCP", "9093/TCP", "6379/TCP", "4318/TCP"),
				"reader":    withDNS("6379/TCP", "8080/TCP", "4318/TCP"),
			}, true},
		{"a writer without Kafka: no relay, no transfers", append(slices.Clone(minimal), "--set", "writer.relay=false,writer.env.WRITER_PROCESSES=false"),
			map[string][]string{
				"writer":    withDNS("5432/TCP", "443/TCP"),
				"projector": withDNS("9092/TCP", "6379/TCP"),
				"reader":    withDNS("6379/TCP", "443/TCP"),
			}, true},
		{"OTLP endpoint without a port", append(slices.Clone(minimal), "--set", "otel.endpoint=https://otlp.example.com"),
			map[string][]string{
				"writer":    withDNS("5432/TCP", "9092/TCP", "443/TCP"),
				"projector": withDNS("9092/TCP", "6379/TCP", "443/TCP"),
				"reader":    withDNS("6379/TCP", "443/TCP"),
			}, true},
		{"proxy mode, API only from the proxy", []string{"--set", "auth.mode=proxy,auth.proxy.trustedProxies={10.0.0.0/8},networkPolicy.api.allowSameNamespace=false",
			"--set-json", `networkPolicy.api.extraFrom=[{"ipBlock":{"cidr":"10.0.0.0/8"}}]`},
			map[string][]string{
				"writer":    withDNS("5432/TCP", "9092/TCP"),
				"projector": withDNS("9092/TCP", "6379/TCP"),
				"reader":    withDNS("6379/TCP"),
			}, false},
		{"production values", []string{"--values", productionValues}, map[string][]string{
			"writer":    withDNS("5432/TCP", "9093/TCP", "443/TCP", "4318/TCP"),
			"projector": withDNS("9093/TCP", "6379/TCP", "4318/TCP"),
			"reader":    withDNS("6379/TCP", "443/TCP", "4318/TCP"),
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, objs := render(t, tc.args...)
			checkCommon(t, objs)
			for _, c := range components {
				d := find(objs, "Deployment", release+"-"+c)
				nps := policiesFor(objs, d)
				if len(nps) != 1 {
					t.Fatalf("%s: %d policies", c, len(nps))
				}
				np := nps[0]
				want := slices.Clone(tc.egress[c])
				slices.Sort(want)
				if got := egressPorts(np); !slices.Equal(got, want) {
					t.Errorf("%s lets out %v, want %v", np, got, want)
				}
				// The API: open to the namespace (and the extra peers) on the container port.
				if c == "projector" {
					continue
				}
				open, extra := false, false
				for _, r := range list(np, "spec", "ingress") {
					for _, peer := range list(r, "from") {
						open = open || isWholeNamespace(peer)
						extra = extra || get(peer, "ipBlock") != nil || get(peer, "namespaceSelector", "matchLabels", "kubernetes.io/metadata.name") == "ingress-nginx"
					}
				}
				if open != tc.apiOpen {
					t.Errorf("%s: API open to the namespace %v, want %v", np, open, tc.apiOpen)
				}
				if !tc.apiOpen && !extra {
					t.Errorf("%s: the extra API peers are missing: %v", np, get(np, "spec", "ingress"))
				}
			}
		})
	}

	t.Run("production peers", func(t *testing.T) {
		_, objs := render(t, "--values", productionValues)
		w := find(objs, "NetworkPolicy", release+"-writer")
		var ingressNS []string
		for _, r := range list(w, "spec", "ingress") {
			for _, peer := range list(r, "from") {
				if ns := str(peer, "namespaceSelector", "matchLabels", "kubernetes.io/metadata.name"); ns != "" {
					ingressNS = append(ingressNS, ns)
				}
			}
		}
		if !slices.Contains(ingressNS, "ingress-nginx") || !slices.Contains(ingressNS, "monitoring") {
			t.Errorf("writer ingress from namespaces %v, want ingress-nginx and monitoring", ingressNS)
		}
		// Egress to Kafka goes to the kafka namespace only.
		for _, r := range list(w, "spec", "egress") {
			if n, _ := num(r, "ports", "0", "port"); n == 9093 {
				if str(r, "to", "0", "namespaceSelector", "matchLabels", "kubernetes.io/metadata.name") != "kafka" {
					t.Errorf("writer's Kafka egress goes to %v", get(r, "to"))
				}
			}
		}
	})

	t.Run("disabled", func(t *testing.T) {
		_, objs := render(t, append(slices.Clone(minimal), "--set", "networkPolicy.enabled=false")...)
		if nps := ofKind(objs, "NetworkPolicy"); len(nps) != 0 {
			t.Errorf("NetworkPolicies with networkPolicy.enabled=false: %v", nps)
		}
	})

	t.Run("helm test reaches every component", func(t *testing.T) {
		_, objs := render(t, append(slices.Clone(minimal), "--set", "networkPolicy.api.allowSameNamespace=false",
			"--set-json", `networkPolicy.api.extraFrom=[{"ipBlock":{"cidr":"10.0.0.0/8"}}]`)...)
		pod := find(objs, "Pod", release+"-test-health")
		if pod == nil {
			t.Fatal("no helm test pod")
		}
		podLabels, _ := get(pod, "metadata", "labels").(map[string]any)
		for _, c := range components {
			np := find(objs, "NetworkPolicy", release+"-"+c)
			reached := false
			for _, r := range list(np, "spec", "ingress") {
				for _, peer := range list(r, "from") {
					ml, ok := get(peer, "podSelector", "matchLabels").(map[string]any)
					if !ok || get(peer, "namespaceSelector") != nil || len(ml) == 0 {
						continue
					}
					match := true
					for k, v := range ml {
						match = match && podLabels[k] == v
					}
					reached = reached || match
				}
			}
			if !reached {
				t.Errorf("%s keeps the helm test pod (labels %v) out", np, slices.Sorted(maps.Keys(podLabels)))
			}
		}
	})
}
