package redisstorage

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// UnmarshalCaddyfile reads the storage's configuration:
//
//	storage mcpo_redis [<address>] {
//		address      <host:port|redis://...|rediss://...>
//		username     <name>
//		password     <password>
//		db           <n>
//		key_prefix   <prefix>
//		tls
//		dial_timeout <duration>
//		read_timeout <duration>
//	}
func (s *Storage) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the module name
	if d.NextArg() {
		s.Address = d.Val()
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		opt := d.Val()
		if opt == "tls" {
			if d.NextArg() {
				return d.ArgErr()
			}
			s.TLS = true
			continue
		}
		if !d.NextArg() {
			return d.ArgErr()
		}
		val := d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
		switch opt {
		case "address":
			s.Address = val
		case "username":
			s.Username = val
		case "password":
			s.Password = val
		case "db":
			n, err := strconv.Atoi(val)
			if err != nil {
				return d.Errf("db: %q is not a number", val)
			}
			s.DB = n
		case "key_prefix":
			s.KeyPrefix = val
		case "dial_timeout", "read_timeout":
			dur, err := caddy.ParseDuration(val)
			if err != nil {
				return d.Errf("%s: %v", opt, err)
			}
			if opt == "dial_timeout" {
				s.DialTimeout = caddy.Duration(dur)
			} else {
				s.ReadTimeout = caddy.Duration(dur)
			}
		default:
			return d.Errf("unknown option %q of storage mcpo_redis", opt)
		}
	}
	return nil
}
