package scheduler

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/moby/sys/user"

	"paas/internal/paas"
)

// A release's config reaches its tasks as a Swarm secret (encrypted in
// the swarm's raft log, on a tmpfs in the task), which the env wrapper
// reads at paas.EnvSecretPath: neither `docker service inspect` nor
// `docker inspect` of a task shows a value. One secret per release config
// (named after its content, so a redeploy of the same config reuses it);
// those no service of the app references are removed after each rollout,
// and a rollback recreates its release's from the store.

// RoleEnv labels the secrets holding releases' config.
const RoleEnv = "env"

// envSecretFile is the secret's file name under /run/secrets.
var envSecretFile = path.Base(paas.EnvSecretPath)

// envData is what the env wrapper reads: the config as KEY=VALUE entries.
func envData(env []string) []byte {
	b, _ := json.Marshal(env) // strings: cannot fail
	return b
}

// envSecretName names rel's config secret after its content.
func (s *Swarm) envSecretName(rel *paas.Release, data []byte) string {
	sum := sha256.Sum256(data)
	return objectName(s.name, rel.App, "env", "v"+strconv.Itoa(rel.Version), hex.EncodeToString(sum[:])[:12])
}

// ensureEnvSecret returns a reference to rel's config secret, creating it
// when missing; nil when rel's image has no env wrapper (its tasks get
// their config in the spec, as before).
func (s *Swarm) ensureEnvSecret(ctx context.Context, rel *paas.Release) (*swarm.SecretReference, error) {
	if !rel.Image.EnvExec {
		return nil, nil
	}
	data := envData(rel.Env())
	name := s.envSecretName(rel, data)
	ref := func(id string) *swarm.SecretReference {
		return &swarm.SecretReference{
			SecretID: id, SecretName: name,
			File: &swarm.SecretReferenceFileTarget{Name: envSecretFile, UID: "0", GID: "0", Mode: 0o444},
		}
	}
	existing, err := s.cli.SecretList(ctx, swarm.SecretListOptions{Filters: filters.NewArgs(filters.Arg("name", name))})
	if err != nil {
		return nil, fmt.Errorf("list secrets: %w", err)
	}
	for _, sec := range existing {
		if sec.Spec.Name == name {
			return ref(sec.ID), nil
		}
	}
	resp, err := s.cli.SecretCreate(ctx, swarm.SecretSpec{
		Annotations: swarm.Annotations{Name: name, Labels: map[string]string{
			paas.LabelInstallation: s.name,
			paas.LabelRole:         RoleEnv,
			paas.LabelApp:          rel.App,
			paas.LabelRelease:      strconv.Itoa(rel.Version),
		}},
		Data: data,
	})
	if err != nil {
		return nil, fmt.Errorf("create the config secret of %s v%d: %w", rel.App, rel.Version, err)
	}
	return ref(resp.ID), nil
}

// withEnvSecret makes spec's tasks read rel's config from ref instead of
// their environment; a command set in the spec (which replaces the image's
// entrypoint, the wrapper) runs through the wrapper.
func withEnvSecret(spec *swarm.ServiceSpec, ref *swarm.SecretReference) {
	cs := spec.TaskTemplate.ContainerSpec
	cs.Env = nil
	cs.Secrets = []*swarm.SecretReference{ref}
	if len(cs.Command) > 0 {
		cs.Command = append(paas.EnvExecCommand(), cs.Command...)
	}
}

// pruneEnvSecrets removes app's config secrets that no service of the app
// references (every one with app's services gone). A secret still in use
// (Swarm refuses) stays for the next prune.
func (s *Swarm) pruneEnvSecrets(ctx context.Context, app string) error {
	secrets, err := s.cli.SecretList(ctx, swarm.SecretListOptions{Filters: filters.NewArgs(
		filters.Arg("label", paas.LabelInstallation+"="+s.name),
		filters.Arg("label", paas.LabelRole+"="+RoleEnv),
		filters.Arg("label", paas.LabelApp+"="+app),
	)})
	if err != nil || len(secrets) == 0 {
		return err
	}
	svcs, err := s.appServices(ctx, app)
	if err != nil {
		return err
	}
	used := map[string]bool{}
	for _, svc := range svcs {
		if cs := svc.Spec.TaskTemplate.ContainerSpec; cs != nil {
			for _, r := range cs.Secrets {
				used[r.SecretID] = true
			}
		}
	}
	for _, sec := range secrets {
		if used[sec.ID] {
			continue
		}
		if err := s.cli.SecretRemove(ctx, sec.ID); err != nil && !isNotFound(err) && !strings.Contains(err.Error(), "in use") {
			return fmt.Errorf("remove secret %s: %w", sec.Spec.Name, err)
		}
	}
	return nil
}

// copyEnv puts env where the env wrapper of a one-off container looks
// (paas.EnvCopyPath), before it starts: a container outside Swarm cannot
// mount a secret, and its Config.Env is what `docker inspect` shows.
//
// The wrapper removes the file once it has read it, so that nothing of the
// config is left in the container for `docker diff` or `docker export` to
// show (a detached task's container is kept for a day). It runs as the
// image's user (userSpec, its USER), often not root (a buildpacks image
// runs as the CNB user): so the file and its directory are handed to that
// user, or the removal would be refused.
func (s *Swarm) copyEnv(ctx context.Context, id, userSpec string, env []string) error {
	owner, err := s.containerUser(ctx, id, userSpec)
	if err != nil {
		return fmt.Errorf("hand the config to the one-off container: user %q: %w", userSpec, err)
	}
	data := envData(env)
	dir := path.Base(paas.EnvCopyDir)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755, Uid: owner.Uid, Gid: owner.Gid, ModTime: time.Now()})
	if err == nil {
		err = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: path.Join(dir, path.Base(paas.EnvCopyPath)), Mode: 0o400, Uid: owner.Uid, Gid: owner.Gid, Size: int64(len(data)), ModTime: time.Now()})
	}
	if err == nil {
		_, err = tw.Write(data)
	}
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = s.cli.CopyToContainer(ctx, id, path.Dir(paas.EnvCopyDir), &buf, container.CopyToContainerOptions{})
	}
	if err != nil {
		return fmt.Errorf("hand the config to the one-off container: %w", err)
	}
	return nil
}

// containerUser resolves userSpec (an image's USER: a name or an ID, and
// maybe a group) to IDs as Docker does when it starts the container, from
// the container's own /etc/passwd and /etc/group.
func (s *Swarm) containerUser(ctx context.Context, id, userSpec string) (*user.ExecUser, error) {
	if userSpec == "" {
		return &user.ExecUser{}, nil // root
	}
	return user.GetExecUser(userSpec, nil, s.containerFile(ctx, id, "/etc/passwd"), s.containerFile(ctx, id, "/etc/group"))
}

// containerFile returns the contents of the file at p in container id, nil
// when it has none.
func (s *Swarm) containerFile(ctx context.Context, id, p string) io.Reader {
	rc, _, err := s.cli.CopyFromContainer(ctx, id, p)
	if err != nil {
		return nil
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	h, err := tr.Next()
	if err != nil || h.Typeflag != tar.TypeReg {
		return nil
	}
	data, err := io.ReadAll(io.LimitReader(tr, 1<<20))
	if err != nil {
		return nil
	}
	return bytes.NewReader(data)
}
