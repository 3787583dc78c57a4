package agent

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/kagenti/authbridge-node/pkg/config"
)

// DefaultConfigPath is where the DaemonSet mounts ConfigMap authbridge-node-config.
const DefaultConfigPath = "/etc/authbridge/config.yaml"

// LoadConfig reads and strictly parses the agent config file. A missing
// file is an error (the ConfigMap is not mounted) unless allowMissing.
// Errors name the file and the offending field.
func LoadConfig(path string, allowMissing bool) (config.Agent, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) && allowMissing {
			return config.ParseAgent(nil)
		}
		return config.Agent{}, fmt.Errorf("read config %s (ConfigMap authbridge-node-config, flag --config): %w", path, err)
	}
	cfg, err := config.ParseAgent(b)
	if err != nil {
		return config.Agent{}, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// NewLogger is a JSON logger at the config's level.
func NewLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	switch strings.ToLower(level) {
	case "debug":
		l = slog.LevelDebug
	case "warn":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	default:
		l = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}
