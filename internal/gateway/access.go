package gateway

import "github.com/holdfast/holdfast/internal/access"

// TableAccess answers the backend's questions from a repository's access
// table (package access): what holdfast serve uses.
func TableAccess(t *access.Table) Access { return tableAccess{t} }

type tableAccess struct{ t *access.Table }

func (a tableAccess) BucketPolicy(bucket, key string) ([]byte, error) {
	return a.t.BucketPolicyFor(bucket, key)
}
func (a tableAccess) MayOverwrite(key, bucket string) bool { return a.t.MayOverwrite(key, bucket) }
func (a tableAccess) Visible(key, bucket string) bool      { return a.t.Visible(key, bucket) }
func (a tableAccess) Suspended(string) bool                { return false }

func (a tableAccess) Allowed(key, bucket string, op Op) bool {
	switch op {
	case OpRead:
		return a.t.Allowed(key, bucket, access.Read)
	case OpWrite:
		return a.t.MayPut(key, bucket)
	case OpList:
		return a.t.Allowed(key, bucket, access.List)
	case OpDelete:
		return a.t.Allowed(key, bucket, access.Delete)
	case OpAdmin:
		return a.t.IsAdmin(key)
	}
	return false
}
