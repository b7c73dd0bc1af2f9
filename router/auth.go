package router

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/gammazero/nexus/v3/router/auth"
)

// Credential lets one client in when the router is not anonymous: with a
// Ticket (WAMP-Ticket authentication, the ticket sent as is, so use it over
// TLS or loopback only) and/or a Secret (WAMP-CRA, a challenge signed with
// HMAC-SHA256; the secret never crosses the wire).
type Credential struct {
	AuthID string `json:"authid"`
	Ticket string `json:"ticket,omitempty"`
	Secret string `json:"secret,omitempty"`
	// Role is the authrole the session gets; "user" when empty.
	Role string `json:"role,omitempty"`
}

// LoadCredentials reads a JSON file holding a list of credentials:
//
//	[{"authid": "php-app", "ticket": "…"}, {"authid": "worker", "secret": "…", "role": "backend"}]
func LoadCredentials(path string) ([]Credential, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read credentials: %w", err)
	}
	var creds []Credential
	if err := json.Unmarshal(b, &creds); err != nil {
		return nil, fmt.Errorf("parse credentials %s: %w", path, err)
	}
	seen := map[string]bool{}
	for i, c := range creds {
		switch {
		case c.AuthID == "":
			return nil, fmt.Errorf("credentials %s: entry %d has no authid", path, i)
		case c.Ticket == "" && c.Secret == "":
			return nil, fmt.Errorf("credentials %s: %q has neither ticket nor secret", path, c.AuthID)
		case seen[c.AuthID]:
			return nil, fmt.Errorf("credentials %s: %q appears twice", path, c.AuthID)
		}
		seen[c.AuthID] = true
	}
	if len(creds) == 0 {
		return nil, fmt.Errorf("credentials %s: no entries; leave the file out to allow anonymous clients", path)
	}
	return creds, nil
}

// keyStore serves credentials to nexus's ticket and CRA authenticators.
type keyStore map[string]Credential

var errUnknownAuthID = errors.New("no such authid for this method")

func (ks keyStore) AuthKey(authid, authmethod string) ([]byte, error) {
	c, ok := ks[authid]
	switch {
	case ok && authmethod == "ticket" && c.Ticket != "":
		return []byte(c.Ticket), nil
	case ok && authmethod == "wampcra" && c.Secret != "":
		return []byte(c.Secret), nil
	}
	return nil, errUnknownAuthID
}

// PasswordInfo returns no salt: secrets are used as given, not derived.
func (ks keyStore) PasswordInfo(string) (string, int, int) { return "", 0, 0 }

func (ks keyStore) AuthRole(authid string) (string, error) {
	c, ok := ks[authid]
	if !ok {
		return "", errUnknownAuthID
	}
	if c.Role == "" {
		return "user", nil
	}
	return c.Role, nil
}

func (ks keyStore) Provider() string { return "php-wamp-observer" }

func authenticators(creds []Credential) []auth.Authenticator {
	ks := keyStore{}
	for _, c := range creds {
		ks[c.AuthID] = c
	}
	return []auth.Authenticator{auth.NewTicketAuthenticator(ks, 0), auth.NewCRAuthenticator(ks, 0)}
}
