//go:build !linux

package cgroup

import (
	"context"
	"fmt"
)

// Manager is always Unavailable outside Linux.
type Manager struct{}

// Group is never made outside Linux.
type Group struct{}

const why = "cgroups exist only on Linux"

func NewManager(opts Options) (*Manager, error) {
	if opts.Name != "" {
		if err := checkName(opts.Name); err != nil {
			return nil, err
		}
	}
	return &Manager{}, nil
}

func (m *Manager) Mode() Mode { return Unavailable }
func (m *Manager) Describe() string {
	return "cgroups unavailable: " + why + "; tasks have no memory/cpu/pids limits"
}
func (m *Manager) New(string, Limits) (*Group, error) {
	return nil, fmt.Errorf("cgroup: %w: %s", ErrUnavailable, why)
}
func (m *Manager) CleanupStale() (int, error) { return 0, nil }
func (m *Manager) Close() error               { return nil }

func (g *Group) CgroupFD() (int, bool)           { return -1, false }
func (g *Group) AddProc(int) error               { return ErrUnavailable }
func (g *Group) Kill() error                     { return ErrUnavailable }
func (g *Group) WaitEmpty(context.Context) error { return ErrUnavailable }
func (g *Group) Usage() (Usage, error)           { return Usage{}, ErrUnavailable }
func (g *Group) Close() error                    { return nil }
func (g *Group) Path() string                    { return "" }
