package build

import "testing"

func TestParsePlatform(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Platform
		err  bool
	}{
		{"linux/amd64", Platform{OS: "linux", Arch: "amd64"}, false},
		{"linux/arm/v7", Platform{OS: "linux", Arch: "arm", Variant: "v7"}, false},
		{"darwin/arm64", Platform{OS: "darwin", Arch: "arm64"}, false},
		{"linux", Platform{}, true},
		{"linux/", Platform{}, true},
		{"linux/amd64/v3", Platform{}, true},
		{"linux/arm/7", Platform{}, true},
		{"a/b/c/d", Platform{}, true},
	} {
		got, err := ParsePlatform(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParsePlatform(%q) = %+v, %v; want %+v, error %v", tc.in, got, err, tc.want, tc.err)
		}
		if err == nil && got.String() != tc.in {
			t.Errorf("%+v.String() = %q, want %q", got, got.String(), tc.in)
		}
	}
}
