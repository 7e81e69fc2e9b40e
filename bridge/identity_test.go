package bridge

import (
	"context"
	"testing"
)

func TestIdentityTravelsInTheContext(t *testing.T) {
	if _, ok := IdentityFrom(context.Background()); ok {
		t.Error("a bare context carries an identity")
	}
	want := Identity{ID: "u-1", Email: "a@example.com", Name: "A", Role: "user", Groups: []string{"g"}}
	got, ok := IdentityFrom(WithIdentity(context.Background(), want))
	if !ok || got.ID != want.ID || got.Email != want.Email || got.Name != want.Name || got.Role != want.Role ||
		len(got.Groups) != 1 || got.Groups[0] != "g" {
		t.Errorf("IdentityFrom = %+v, %v; want %+v", got, ok, want)
	}
}
