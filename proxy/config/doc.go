// Package config reads the proxy's configuration from the environment
// variables the injector sets (CONDUIT_PROXY_*). Every invalid value is an
// error that names the variable and the values it accepts.
package config
