package deps
import (
 _ "github.com/gliderlabs/ssh"
 _ "golang.org/x/crypto/ssh"
 _ "go.etcd.io/bbolt"
 _ "github.com/go-git/go-git/v5"
 _ "github.com/docker/docker/client"
 _ "github.com/docker/docker/api/types/swarm"
 _ "github.com/docker/docker/pkg/stdcopy"
 _ "github.com/docker/docker/pkg/jsonmessage"
 _ "github.com/rogpeppe/go-internal/testscript"
 _ "golang.org/x/sync/errgroup"
 _ "github.com/opencontainers/go-digest"
)
