package hsm

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stddef.h>
#include <stdlib.h>

// The start of PKCS#11's CK_FUNCTION_LIST (pkcs11f.h, identical in every
// version 2.x and 3.0 list): a CK_VERSION, then the function pointers in
// the standard's order. C_GetFunctionList is the 4th, C_Decrypt the 35th.
typedef unsigned long hf_ulong;
typedef hf_ulong (*hf_decrypt_fn)(hf_ulong session, unsigned char *in, hf_ulong inlen,
	unsigned char *out, hf_ulong *outlen);
typedef struct {
	unsigned char major, minor;
	void *before[34]; // C_Initialize … C_DecryptInit
	hf_decrypt_fn decrypt;
} hf_function_list;
typedef hf_ulong (*hf_get_function_list)(hf_function_list **);

// hf_open takes a reference to the already loaded module at path and
// returns its C_Decrypt from its function list, or NULL (and no
// reference) if the module is not loaded or its list does not look like
// a PKCS#11 list: its C_GetFunctionList entry must be the exported one.
static void *hf_open(const char *path, hf_decrypt_fn *decrypt) {
	void *h = dlopen(path, RTLD_LAZY | RTLD_NOLOAD);
	if (h == NULL) {
		return NULL;
	}
	hf_get_function_list get = (hf_get_function_list)dlsym(h, "C_GetFunctionList");
	hf_function_list *fl = NULL;
	if (get == NULL || get(&fl) != 0 || fl == NULL || fl->before[3] != (void *)get || fl->decrypt == NULL) {
		dlclose(h);
		return NULL;
	}
	*decrypt = fl->decrypt;
	return h;
}

static void hf_close(void *h) { dlclose(h); }

static hf_ulong hf_decrypt(hf_decrypt_fn f, hf_ulong session, unsigned char *in, hf_ulong inlen,
	unsigned char *out, hf_ulong *outlen) {
	return f(session, in, inlen, out, outlen);
}
*/
import "C"

import (
	"unsafe"

	"github.com/miekg/pkcs11"
)

// Decrypting into memory holdfast owns. The binding's Ctx.Decrypt has the
// module write the plaintext (an unwrapped key) into C memory it frees
// without clearing, where half of each key stayed in the process's C
// heap. A module's C_Decrypt, called here, writes into a Go buffer that
// the caller copies into protected memory and clears.

// cDecrypt is a module's own C_Decrypt, for decryptInto.
type cDecrypt struct {
	handle unsafe.Pointer // a reference to the loaded library
	fn     C.hf_decrypt_fn
}

// openDecrypt finds the C_Decrypt of the module loaded from path, or nil
// if it cannot be found safely (the binding's Decrypt is used then).
func openDecrypt(path string) *cDecrypt {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var fn C.hf_decrypt_fn
	h := C.hf_open(cpath, &fn)
	if h == nil {
		return nil
	}
	return &cDecrypt{handle: h, fn: fn}
}

func (d *cDecrypt) close() {
	if d != nil {
		C.hf_close(d.handle)
	}
}

// decrypt finishes the decryption begun on session sh (C_DecryptInit)
// with the whole of in, and returns the plaintext in a Go buffer of its
// own, which the caller clears. Like the binding, it asks the module for
// the plaintext's length first.
func (d *cDecrypt) decrypt(sh pkcs11.SessionHandle, in []byte) ([]byte, error) {
	if len(in) == 0 {
		return nil, pkcs11.Error(pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE)
	}
	inp := (*C.uchar)(unsafe.Pointer(&in[0]))
	var n C.hf_ulong
	if rv := C.hf_decrypt(d.fn, C.hf_ulong(sh), inp, C.hf_ulong(len(in)), nil, &n); rv != 0 {
		return nil, pkcs11.Error(rv)
	}
	out := make([]byte, max(int(n), 1))
	if rv := C.hf_decrypt(d.fn, C.hf_ulong(sh), inp, C.hf_ulong(len(in)), (*C.uchar)(unsafe.Pointer(&out[0])), &n); rv != 0 {
		clear(out)
		return nil, pkcs11.Error(rv)
	}
	if int(n) > len(out) {
		clear(out)
		return nil, pkcs11.Error(pkcs11.CKR_BUFFER_TOO_SMALL)
	}
	return out[:n], nil
}
