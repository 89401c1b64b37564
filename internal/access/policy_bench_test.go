package access

import (
	"fmt"
	"testing"

	"github.com/gofiber/fiber/v3"
	"github.com/valyala/fasthttp"
	"github.com/versity/versitygw/auth"
)

// BenchmarkAuthorize: one GetObject authorization by versitygw's
// authorizer (which parses the bucket policy it is given every time) for
// a key among n keys that all hold something on the bucket, under the
// whole bucket policy and under the requesting key's statement alone
// (BucketPolicyFor, what the gateway gives it). The whole policy's cost
// grows with the number of keys; the key's own does not.
func BenchmarkAuthorize(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		e := newEnv(b)
		tb := e.open(b, e.cat, Options{})
		var id string
		for i := range n {
			c, _ := mustAdd(b, tb, Spec{Name: fmt.Sprintf("k%d", i), Grants: []Grant{{"photos", Read}}})
			id = c.ID
		}
		iam := tb.IAM()
		acc, err := iam.GetUserAccount(id)
		if err != nil {
			b.Fatal(err)
		}
		app := fiber.New()
		fctx := app.AcquireCtx(&fasthttp.RequestCtx{})
		opts := auth.AccessOptions{Acc: acc, Bucket: "photos", Object: "k.jpg", Actions: []auth.Action{auth.GetObjectAction}, Iam: iam}
		for _, c := range []struct {
			name string
			be   policyBackend
		}{{"whole", policyBackend{t: tb}}, {"own", policyBackend{t: tb, only: &id}}} {
			b.Run(fmt.Sprintf("keys=%d/%s", n, c.name), func(b *testing.B) {
				for b.Loop() {
					if err := auth.VerifyAccess(fctx, c.be, opts); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		app.ReleaseCtx(fctx)
	}
}
