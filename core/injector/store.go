package injector

import (
	"fmt"
	"log/slog"
	"sync"

	corev1 "k8s.io/api/core/v1"
)

// ConfigStore holds the current Config, rebuilt from the ConfigMaps
// conduit-config and conduit-identity-trust-roots whenever they change. An
// invalid conduit-config keeps the last good configuration (and is logged),
// so a bad edit never breaks injection of new pods.
type ConfigStore struct {
	Namespace string
	Log       *slog.Logger

	mu         sync.RWMutex
	current    Config
	values     []byte // last good values document
	trustRoots string // from conduit-identity-trust-roots
	loaded     bool   // conduit-config seen and valid
	lastErr    error
}

// NewConfigStore starts with the defaults for control-plane namespace ns.
func NewConfigStore(ns string, log *slog.Logger) *ConfigStore {
	return &ConfigStore{Namespace: ns, Log: log, current: DefaultConfig(ns)}
}

// Get returns the current configuration.
func (s *ConfigStore) Get() Config {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.current
}

// Loaded reports whether a valid conduit-config has been read, and the last
// error if the latest one was invalid.
func (s *ConfigStore) Loaded() (bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.loaded, s.lastErr
}

// Update applies a ConfigMap of the control-plane namespace (others are
// ignored); deleted is true when it was removed.
func (s *ConfigStore) Update(cm *corev1.ConfigMap, deleted bool) {
	if cm.Namespace != s.Namespace {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch cm.Name {
	case ConfigMapName:
		if deleted {
			s.Log.Warn("ConfigMap deleted; keeping the last configuration", "configmap", ConfigMapName)
			return
		}
		values, ok := cm.Data[ConfigMapKey]
		if !ok {
			s.lastErr = fmt.Errorf("injector: ConfigMap %s has no key %s", ConfigMapName, ConfigMapKey)
			s.Log.Error("invalid configuration; keeping the last good one", "err", s.lastErr)
			return
		}
		if _, err := ParseConfig(s.Namespace, []byte(values)); err != nil {
			s.lastErr = err
			s.Log.Error("invalid configuration; keeping the last good one", "err", err)
			return
		}
		s.values, s.loaded, s.lastErr = []byte(values), true, nil
	case TrustRootsName:
		if deleted {
			s.trustRoots = ""
		} else {
			s.trustRoots = cm.Data[TrustRootsKey]
		}
	default:
		return
	}
	s.rebuild()
}

func (s *ConfigStore) rebuild() {
	c := DefaultConfig(s.Namespace)
	if s.values != nil {
		var err error
		if c, err = ParseConfig(s.Namespace, s.values); err != nil {
			return // validated when stored
		}
	}
	if c.Identity.TrustAnchorsPEM == "" && s.trustRoots != "" {
		c.Identity.TrustAnchorsPEM = s.trustRoots
	}
	s.current = c
	s.Log.Info("configuration loaded", "version", c.Version, "proxyImage", c.Proxy.Image, "trustAnchors", c.Identity.TrustAnchorsPEM != "")
}
