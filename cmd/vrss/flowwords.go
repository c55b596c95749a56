package main

import "github.com/vrss-dev/vrss/flow"

// The words of `vrss flow add` are package flow's (flow.ParseRuleArgs), so
// that port ACL files read the same matches (flow.ParseMatchArgs).

const flowWordsHelp = flow.RuleArgsHelp

// flowWords is a rule as `vrss flow add` reads it.
type flowWords = flow.RuleArgs

// parseFlowWords reads the words of `vrss flow add` after the TAP's name.
func parseFlowWords(args []string) (flowWords, error) { return flow.ParseRuleArgs(args) }

func oneOf(w string, set ...string) bool {
	for _, s := range set {
		if w == s {
			return true
		}
	}
	return false
}
