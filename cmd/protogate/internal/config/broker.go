package config

import (
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
	return bc, nil
}

func (p BrokerPermissions) broker() broker.Permissions {
	return broker.Permissions{
		Publish:   broker.Rules{Allow: p.Publish.Allow, Deny: p.Publish.Deny},
		Subscribe: broker.Rules{Allow: p.Subscribe.Allow, Deny: p.Subscribe.Deny},
	}
}
