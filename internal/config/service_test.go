package config

import (
	"maps"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// serviceEnv is the smallest valid environment with SERVICE_NAME.
func serviceEnv() map[string]string {
	env := minimalEnv()
	maps.Copy(env, map[string]string{"SERVICE_NAME": "myapp", "SERVICE_PORTS": `[{"name":"http","port":8080}]`, "POD_IP": "10.0.0.7"})
	return env
}

func TestLoadRejectsBadServiceSettings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		env   map[string]string // merged over serviceEnv
		unset []string
		want  []string // in the one line of the error
	}{
		{"SERVICE_NAME invalid", map[string]string{"SERVICE_NAME": "My_App"}, nil,
			[]string{`SERVICE_NAME="My_App"`, "must be a valid Service name"}},
		{"SERVICE_NAME too long", map[string]string{"SERVICE_NAME": strings.Repeat("a", 64)}, nil,
			[]string{`SERVICE_NAME="aaaa`, "must be a valid Service name", "63"}},
		{"SERVICE_NAMESPACE invalid", map[string]string{"SERVICE_NAMESPACE": "NS"}, nil,
			[]string{`SERVICE_NAMESPACE="NS"`, "must be a valid namespace name"}},
		{"SERVICE_PORTS missing", nil, []string{"SERVICE_PORTS"},
			[]string{"SERVICE_PORTS is required when SERVICE_NAME is set"}},
		{"SERVICE_PORTS empty", map[string]string{"SERVICE_PORTS": ""}, nil,
			[]string{`SERVICE_PORTS=""`, "must be a JSON list"}},
		{"SERVICE_PORTS not JSON", map[string]string{"SERVICE_PORTS": "http:8080"}, nil,
			[]string{`SERVICE_PORTS="http:8080"`, "must be a JSON list"}},
		{"SERVICE_PORTS an object", map[string]string{"SERVICE_PORTS": `{"port":8080}`}, nil,
			[]string{`SERVICE_PORTS=`, "must be a JSON list"}},
		{"SERVICE_PORTS trailing data", map[string]string{"SERVICE_PORTS": `[{"port":8080}] []`}, nil,
			[]string{`SERVICE_PORTS=`, "nothing after it"}},
		{"SERVICE_PORTS empty list", map[string]string{"SERVICE_PORTS": `[]`}, nil,
			[]string{`SERVICE_PORTS="[]"`, "at least one port"}},
		{"SERVICE_PORTS unknown field", map[string]string{"SERVICE_PORTS": `[{"port":8080,"targetPort":80}]`}, nil,
			[]string{`SERVICE_PORTS=`, `unknown field "targetPort"`}},
		{"SERVICE_PORTS port as string", map[string]string{"SERVICE_PORTS": `[{"port":"8080"}]`}, nil,
			[]string{`SERVICE_PORTS=`, "must be a JSON list"}},
		{"SERVICE_PORTS port missing", map[string]string{"SERVICE_PORTS": `[{"name":"http"}]`}, nil,
			[]string{`SERVICE_PORTS=`, `port "http": port must be a number from 1 to 65535`}},
		{"SERVICE_PORTS port zero", map[string]string{"SERVICE_PORTS": `[{"port":0}]`}, nil,
			[]string{`port 1: port must be a number from 1 to 65535`}},
		{"SERVICE_PORTS port too big", map[string]string{"SERVICE_PORTS": `[{"port":65536}]`}, nil,
			[]string{`port 1: port must be a number from 1 to 65535`}},
		{"SERVICE_PORTS port beyond int32", map[string]string{"SERVICE_PORTS": `[{"port":4294967296}]`}, nil,
			[]string{`SERVICE_PORTS=`, "must be a JSON list"}},
		{"SERVICE_PORTS protocol unknown", map[string]string{"SERVICE_PORTS": `[{"port":53,"protocol":"ICMP"}]`}, nil,
			[]string{`port 1: protocol must be TCP, UDP or SCTP`}},
		{"SERVICE_PORTS protocol lower case", map[string]string{"SERVICE_PORTS": `[{"port":53,"protocol":"udp"}]`}, nil,
			[]string{`protocol must be TCP, UDP or SCTP`}},
		{"SERVICE_PORTS name invalid", map[string]string{"SERVICE_PORTS": `[{"name":"HTTP","port":80}]`}, nil,
			[]string{`port "HTTP": name must be a valid port name`}},
		{"SERVICE_PORTS names repeated", map[string]string{"SERVICE_PORTS": `[{"name":"a","port":80},{"name":"a","port":81}]`}, nil,
			[]string{`port "a": names must be unique`}},
		{"SERVICE_PORTS several unnamed", map[string]string{"SERVICE_PORTS": `[{"port":80},{"port":81}]`}, nil,
			[]string{`port 2: names must be unique; with several ports, name each`}},
		{"SERVICE_PORTS appProtocol invalid", map[string]string{"SERVICE_PORTS": `[{"port":80,"appProtocol":"a b"}]`}, nil,
			[]string{`port 1: appProtocol must be a qualified name`}},
		{"POD_IP missing", nil, []string{"POD_IP"},
			[]string{"POD_IP is required when SERVICE_NAME is set", "status.podIP"}},
		{"POD_IP not an IP", map[string]string{"POD_IP": "pod-0"}, nil,
			[]string{`POD_IP="pod-0": must be an IP address`}},
		{"POD_IP loopback", map[string]string{"POD_IP": "127.0.0.11"}, nil,
			[]string{`POD_IP="127.0.0.11": must not be unspecified, loopback or link-local`}},
		{"POD_IP link-local", map[string]string{"POD_IP": "169.254.1.1"}, nil,
			[]string{`POD_IP="169.254.1.1": must not be`}},
		{"POD_IP unspecified", map[string]string{"POD_IP": "::"}, nil,
			[]string{`POD_IP="::": must not be`}},
		{"POD_IP with a zone", map[string]string{"POD_IP": "fd00::1%eth0"}, nil,
			[]string{`POD_IP="fd00::1%eth0": must be an IP address without a zone`}},
		{"POD_IP not canonical", map[string]string{"POD_IP": "FD00:0::1"}, nil,
			[]string{`POD_IP="FD00:0::1": must be an IP address in canonical form, fd00::1`}},
		{"POD_IP IPv4-mapped", map[string]string{"POD_IP": "::ffff:10.0.0.7"}, nil,
			[]string{`canonical form, 10.0.0.7`}},
		{"NODE_NAME invalid", map[string]string{"NODE_NAME": "Node_1"}, nil,
			[]string{`NODE_NAME="Node_1": must be a valid node name`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := serviceEnv()
			for _, k := range tt.unset {
				delete(env, k)
			}
			maps.Copy(env, tt.env)
			_, err := Load(lookupIn(env), testSources(t))
			lines := errLines(err)
			if len(lines) != 1 {
				t.Fatalf("Load() error = %v, want one line", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(lines[0], w) {
					t.Errorf("Load() error %q lacks %q", lines[0], w)
				}
			}
		})
	}
}

// TestLoadIgnoresServiceSettingsWithoutServiceName: the writer is off, so
// its other variables are not checked.
func TestLoadIgnoresServiceSettingsWithoutServiceName(t *testing.T) {
	t.Parallel()
	env := minimalEnv()
	maps.Copy(env, map[string]string{"SERVICE_PORTS": "garbage", "POD_IP": "127.0.0.1", "NODE_NAME": "Bad_Node"})
	c, err := Load(lookupIn(env), testSources(t))
	if err != nil {
		t.Fatalf("Load() error = %v", err)
	}
	if c.ServiceNamespace != "" {
		t.Errorf("ServiceNamespace = %q, want empty while off", c.ServiceNamespace)
	}
}

func TestLoadAcceptsServiceSettings(t *testing.T) {
	t.Parallel()
	env := serviceEnv()
	c, err := Load(lookupIn(env), testSources(t))
	if err != nil {
		t.Fatalf("Load() error = %v", err)
	}
	if c.ServiceNamespace != "default" {
		t.Errorf("ServiceNamespace = %q, want the Lease's namespace", c.ServiceNamespace)
	}
	maps.Copy(env, map[string]string{"SERVICE_NAMESPACE": "routing", "NODE_NAME": "node-1.example", "POD_IP": "fd00::7"})
	c, err = Load(lookupIn(env), testSources(t))
	if err != nil {
		t.Fatalf("Load() error = %v", err)
	}
	if c.ServiceNamespace != "routing" || c.NodeName != "node-1.example" || c.PodIP != "fd00::7" {
		t.Errorf("Load() = %+v, want SERVICE_NAMESPACE, NODE_NAME and POD_IP as set", c)
	}
}

func TestParseServicePorts(t *testing.T) {
	t.Parallel()
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	tests := []struct {
		in   string
		want []discoveryv1.EndpointPort
	}{
		// k8s-await-election's README example.
		{`[{"name":"http","port":8080}]`, []discoveryv1.EndpointPort{{Name: new("http"), Port: new(int32(8080)), Protocol: &tcp}}},
		{` [ {"port": 53, "protocol": "UDP"} ] `, []discoveryv1.EndpointPort{{Name: new(""), Port: new(int32(53)), Protocol: &udp}}},
		{`[{"name":"grpc","port":9090,"protocol":"TCP","appProtocol":"kubernetes.io/h2c"},{"name":"metrics","port":9100}]`, []discoveryv1.EndpointPort{
			{Name: new("grpc"), Port: new(int32(9090)), Protocol: &tcp, AppProtocol: new("kubernetes.io/h2c")},
			{Name: new("metrics"), Port: new(int32(9100)), Protocol: &tcp},
		}},
		{`[{"port":1},{"name":"b","port":65535,"protocol":"SCTP"}]`, []discoveryv1.EndpointPort{
			{Name: new(""), Port: new(int32(1)), Protocol: &tcp},
			{Name: new("b"), Port: new(int32(65535)), Protocol: new(corev1.ProtocolSCTP)},
		}},
	}
	for _, tt := range tests {
		got, err := ParseServicePorts(tt.in)
		if err != nil {
			t.Errorf("ParseServicePorts(%s) error = %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseServicePorts(%s) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

// TestLoadRejectsAMalformedPodIPWithoutServiceName: POD_IP also gives the
// take-over offer's address, so it must be an IP address even without SERVICE_NAME.
func TestLoadRejectsAMalformedPodIPWithoutServiceName(t *testing.T) {
	t.Parallel()
	env := minimalEnv()
	env["POD_IP"] = "not-an-ip"
	_, err := Load(lookupIn(env), testSources(t))
	lines := errLines(err)
	if len(lines) != 1 || !strings.Contains(lines[0], `POD_IP="not-an-ip": must be an IP address`) {
		t.Fatalf("Load() error = %v, want one line naming POD_IP, its value and the rule", err)
	}
}
