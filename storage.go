package caddymcpo

// The storage module caddy.storage.mcpo_redis (package
// storage/redisstorage) comes with the module, so that several Caddy
// instances share their OAuth tokens and tool listings through Redis.
import _ "github.com/caddy-mcpo/caddy-mcpo/storage/redisstorage"
