// ovfparse reads an OVF descriptor with govmomi's ovf package (the parser
// vSphere's own Go tooling uses) and prints the envelope as JSON, so the
// integration tests can assert on what a VMware-side consumer sees.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/vmware/govmomi/ovf"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: ovfparse FILE.ovf")
		os.Exit(2)
	}
	f, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer f.Close()
	env, err := ovf.Unmarshal(f)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ovfparse:", err)
		os.Exit(1)
	}
	out, err := json.MarshalIndent(env, "", "  ")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(string(out))
}
