package config

import (
	"crypto/tls"
	"fmt"

	"github.com/protogate/protogate/gateway/broker"
)

// BrokerConfig returns what broker.Start runs the embedded NATS server
// with, but for the Logger: the listeners, limits, users, nkeys and TLS
// (whose files it loads).
func (c *Config) BrokerConfig() (broker.Config, error) {
	b := &c.Broker
	bc := broker.Config{
		Node:       c.Node.Name,
		DataDir:    c.Node.DataDir,
		NATSListen: b.NATSListen,
		MQTTListen: b.MQTTListen,
		MaxPayload: int(b.MaxPayload),
		// MaxBuffered is validated to at most 1GiB.
		MaxBufferedBytes: int(b.MaxBuffered),
		AllowAnonymous:   b.AllowAnonymous,
	}
	for _, u := range b.Users {
		bc.Users = append(bc.Users, broker.User{
			Name:            u.User,
			Password:        u.Password,
			ConnectionTypes: u.ConnectionTypes,
			Permissions:     u.Permissions.broker(),
		})
	}
	for _, k := range b.NKeys {
		bc.NKeys = append(bc.NKeys, broker.NKey{PublicKey: k.NKey, Permissions: k.Permissions.broker()})
	}
	if b.TLS != nil {
		tc, err := b.TLS.TLSConfig()
		if err != nil {
			return broker.Config{}, err
		}
		bc.TLS = tc
	}
	if cl := b.Cluster; cl != nil {
		bc.Cluster = &broker.ClusterConfig{
			Name: cl.Name, Listen: cl.Listen, Advertise: cl.Advertise,
			Routes: cl.Routes, Username: cl.User, Password: cl.Password,
		}
		if cl.TLS != nil {
			tc, err := cl.TLS.TLSConfig()
			if err != nil {
				return broker.Config{}, fmt.Errorf("broker.cluster.tls: %w", err)
			}
			bc.Cluster.TLS = tc
		}
	}
	if l := b.LeafNode; l != nil {
		bc.Leaf = &broker.LeafConfig{}
		var tc *tls.Config
		if l.TLS != nil {
			var err error
			if tc, err = l.TLS.TLSConfig(); err != nil {
				return broker.Config{}, fmt.Errorf("broker.leafnode.tls: %w", err)
			}
		}
		for _, r := range l.Remotes {
			bc.Leaf.Remotes = append(bc.Leaf.Remotes, broker.LeafRemote{
				URLs: []string{r.URL}, Credentials: r.Credentials,
				Username: r.User, Password: r.Password, NKeySeedFile: r.NKeySeedFile, TLS: tc,
			})
		}
	}
	return bc, nil
}

// TLSConfig loads the files of t into the configuration of both ends of a
// route: the certificate is presented, and peers are verified against
// CAFile whichever end connects.
func (t *RouteTLS) TLSConfig() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("config: cert_file and key_file: %w", err)
	}
	pool, err := loadPool(t.CAFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
		ClientCAs: pool, RootCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert,
	}, nil
}

func (p BrokerPermissions) broker() broker.Permissions {
	return broker.Permissions{
		Publish:   broker.Rules{Allow: p.Publish.Allow, Deny: p.Publish.Deny},
		Subscribe: broker.Rules{Allow: p.Subscribe.Allow, Deny: p.Subscribe.Deny},
	}
}
