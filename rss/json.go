package rss

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// configJSON is the JSON form of a Config. Pointers tell an absent field
// from a zero one: indirection_table and queues are mutually exclusive, and
// an omitted key means DefaultKey.
type configJSON struct {
	HashTypes         json.RawMessage `json:"hash_types"`
	Key               *string         `json:"key,omitempty"`
	IndirectionTable  *[]uint16       `json:"indirection_table,omitempty"`
	Queues            *int            `json:"queues,omitempty"`
	UnclassifiedQueue uint16          `json:"unclassified_queue"`
}

// equalTableLen is the table length "queues": N expands to, the 128 entries
// every virtio device must support.
const equalTableLen = 128

// ParseConfigJSON parses the JSON form of a configuration:
//
//	{"hash_types": ["tcpv4", "udpv4", "ipv4"], "key": "6d5a56da...",
//	 "indirection_table": [0, 1, 2, 3], "unclassified_queue": 0}
//
// hash_types (required) is a list of names or one comma-separated string,
// as ParseHashTypes accepts ("all" and "none" included). key is hex as
// ParseKey accepts; omitted, it is DefaultKey. Exactly one of
// indirection_table and queues must be given; "queues": N stands for
// EqualTable(128, N). unclassified_queue defaults to 0; with queues it must
// be one of those N queues, as every table entry is (with
// indirection_table the number of queues is not known, so it is not
// checked). Unknown fields and trailing data are errors; a number outside
// its field's range (a queue beyond 65535, a negative one) is an error, never
// truncated.
//
// The result passes New's bounds; a configuration outside them returns
// Validate's error, which wraps ErrKeySize, ErrTableLength, ErrQueueRange or
// ErrHashTypes.
func ParseConfigJSON(data []byte) (Config, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var j configJSON
	if err := dec.Decode(&j); err != nil {
		return Config{}, fmt.Errorf("rss: config JSON: %w", err)
	}
	// Decode stops after one value; anything but white space after it is
	// most likely a second, ignored configuration.
	if _, err := dec.Token(); err != io.EOF {
		return Config{}, errors.New("rss: config JSON: data after the configuration object")
	}
	var c Config
	var err error
	if c.HashTypes, err = parseHashTypesJSON(j.HashTypes); err != nil {
		return Config{}, err
	}
	if j.Key == nil {
		c.Key = append([]byte(nil), DefaultKey...)
	} else if c.Key, err = ParseKey(*j.Key); err != nil {
		return Config{}, fmt.Errorf("rss: config JSON: key: %w", err)
	}
	switch {
	case j.IndirectionTable != nil && j.Queues != nil:
		return Config{}, errors.New("rss: config JSON: give either indirection_table or queues, not both")
	case j.IndirectionTable != nil:
		c.Table = *j.IndirectionTable
		if c.Table == nil { // "indirection_table": [] must not look absent
			c.Table = []uint16{}
		}
	case j.Queues != nil:
		n := *j.Queues
		if n < 1 || n > 1<<16 {
			return Config{}, fmt.Errorf("%w: queues is %d, want 1 to 65536", ErrQueueRange, n)
		}
		if int(j.UnclassifiedQueue) >= n {
			return Config{}, fmt.Errorf("%w: unclassified_queue is %d, want 0 to %d (queues is %d)", ErrQueueRange, j.UnclassifiedQueue, n-1, n)
		}
		c.Table = EqualTable(equalTableLen, n)
	default:
		return Config{}, errors.New("rss: config JSON: indirection_table or queues is required")
	}
	c.UnclassifiedQueue = j.UnclassifiedQueue
	if err := c.Validate(Limits{MaxKeySize: MaxKeySize, MaxTableLen: MaxTableLen, HashTypes: AllHashTypes}); err != nil {
		return Config{}, err
	}
	return c, nil
}

// parseHashTypesJSON accepts a list of names or one comma-separated string.
func parseHashTypesJSON(raw json.RawMessage) (HashType, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, errors.New("rss: config JSON: hash_types is required (use [] or \"none\" for no hashing)")
	}
	var list string
	if err := json.Unmarshal(raw, &list); err == nil {
		t, err := ParseHashTypes(list)
		if err != nil {
			return 0, fmt.Errorf("rss: config JSON: hash_types: %w", err)
		}
		return t, nil
	}
	var names []string
	if err := json.Unmarshal(raw, &names); err != nil {
		return 0, errors.New("rss: config JSON: hash_types must be a list of names or a comma-separated string")
	}
	var t HashType
	for _, name := range names {
		// In a list each element is one name; a comma or an empty
		// element is a malformed list, not a nested one.
		if strings.Contains(name, ",") || strings.TrimSpace(name) == "" {
			return 0, fmt.Errorf("rss: config JSON: hash_types: bad element %q", name)
		}
		bit, err := ParseHashTypes(name)
		if err != nil {
			return 0, fmt.Errorf("rss: config JSON: hash_types: %w", err)
		}
		t |= bit
	}
	return t, nil
}

// ParseKey decodes a Toeplitz key written in hex. Bytes may be separated by
// ':' (as ethtool prints keys) or white space: "6d5a56da...",
// "6d:5a:56:da:..." and "6d 5a 56 da ..." are the same key. Upper- and
// lower-case digits are accepted. It does not check the key's length.
func ParseKey(s string) ([]byte, error) {
	var digits strings.Builder
	for _, r := range s {
		switch r {
		case ':', ' ', '\t', '\n', '\r':
			continue
		}
		digits.WriteRune(r)
	}
	key, err := hex.DecodeString(digits.String())
	if err != nil {
		return nil, fmt.Errorf("bad hex key: %w", err)
	}
	return key, nil
}

// MarshalJSON returns the JSON form ParseConfigJSON reads, with hash_types
// as a list of names, key as lower-case hex without separators and the full
// indirection_table, so that ParseConfigJSON(c.MarshalJSON()) equals c for
// every c that New accepts. Hash types outside AllHashTypes have no name
// and are an error (ErrHashTypes).
func (c Config) MarshalJSON() ([]byte, error) {
	if bad := c.HashTypes &^ AllHashTypes; bad != 0 {
		return nil, fmt.Errorf("%w: %s has no JSON name", ErrHashTypes, bad)
	}
	names := []string{} // [] rather than null for the empty set
	for i, name := range hashTypeNames {
		if c.HashTypes&(1<<i) != 0 {
			names = append(names, name)
		}
	}
	table := c.Table
	if table == nil {
		table = []uint16{}
	}
	// A struct, not a map, keeps the fields in this order.
	return json.Marshal(struct {
		HashTypes         []string `json:"hash_types"`
		Key               string   `json:"key"`
		IndirectionTable  []uint16 `json:"indirection_table"`
		UnclassifiedQueue uint16   `json:"unclassified_queue"`
	}{names, hex.EncodeToString(c.Key), table, c.UnclassifiedQueue})
}

// UnmarshalJSON parses data with ParseConfigJSON, so that a Config inside a
// larger JSON document reads the same form MarshalJSON writes. On error c is
// left unchanged.
func (c *Config) UnmarshalJSON(data []byte) error {
	v, err := ParseConfigJSON(data)
	if err != nil {
		return err
	}
	*c = v
	return nil
}
