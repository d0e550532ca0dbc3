package authn

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/protogate/protogate/gateway"
)

// TestEMQXVectors checks the hashes against EMQX's own test vectors
// (apps/emqx/test/emqx_passwd_SUITE.erl: password "password", salt "salt").
func TestEMQXVectors(t *testing.T) {
	for _, tc := range []struct {
		algo       HashAlgorithm
		salt, want string
	}{
		{HashAlgorithm{Name: "md5", SaltPosition: "prefix"}, "salt", "67a1e09bb1f83f5007dc119c14d663aa"},
		{HashAlgorithm{Name: "sha", SaltPosition: "prefix"}, "salt", "59b3e8d637cf97edbe2384cf59cb7453dfe30789"},
		{HashAlgorithm{Name: "sha256", SaltPosition: "suffix"}, "salt", "7a37b85c8918eac19a9089c0fa5a2ab4dce3f90528dcdeec108b23ddf3607b99"},
		{HashAlgorithm{Name: "pbkdf2", MacFun: "sha", Iterations: 2, DKLength: 32}, "ATHENA.MIT.EDUraeburn", "01dbee7f4a9e243e988b62c73cda935da05378b93244ec8f48a99e61ad799d86"},
		{HashAlgorithm{Name: "plain"}, "", "password"},
	} {
		t.Run(tc.algo.Name+"/"+tc.algo.SaltPosition, func(t *testing.T) {
			got, err := tc.algo.Hash("password", tc.salt)
			if err != nil || got != tc.want {
				t.Fatalf("Hash = %q, %v; want %q", got, err, tc.want)
			}
			if !tc.algo.Check("password", tc.want, tc.salt) {
				t.Error("Check refuses the right password")
			}
			if tc.algo.Name != "plain" && !tc.algo.Check("password", strings.ToUpper(tc.want), tc.salt) {
				t.Error("Check refuses an uppercase hex digest")
			}
			if tc.algo.Check("Password", tc.want, tc.salt) {
				t.Error("Check accepts a wrong password")
			}
		})
	}
	bc := HashAlgorithm{Name: "bcrypt"}
	if !bc.Check("password", "$2b$12$wtY3h20mUjjmeaClpqZVvehyw7F.V78F3rbK2xDkCzRTMi6pmfUB6", "") {
		t.Error("bcrypt: EMQX's hash refused")
	}
	if bc.Check("wrong", "$2b$12$wtY3h20mUjjmeaClpqZVvehyw7F.V78F3rbK2xDkCzRTMi6pmfUB6", "") {
		t.Error("bcrypt: wrong password accepted")
	}
}

func TestHashAlgorithmValidate(t *testing.T) {
	for _, tc := range []struct {
		algo HashAlgorithm
		ok   bool
	}{
		{HashAlgorithm{}, true},
		{HashAlgorithm{Name: "sha512", SaltPosition: "suffix"}, true},
		{HashAlgorithm{Name: "sha256", SaltPosition: "middle"}, false},
		{HashAlgorithm{Name: "bcrypt", SaltRounds: 11}, false},
		{HashAlgorithm{Name: "pbkdf2", MacFun: "sha256"}, false},
		{HashAlgorithm{Name: "pbkdf2", MacFun: "md5", Iterations: 1}, false},
		{HashAlgorithm{Name: "pbkdf2", MacFun: "sha512", Iterations: 1000}, true},
		{HashAlgorithm{Name: "argon2"}, false},
	} {
		if err := tc.algo.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v: %v, want ok=%v", tc.algo, err, tc.ok)
		}
	}
}

// TestReadUsers imports EMQX's export formats, hashed and plain.
func TestReadUsers(t *testing.T) {
	algo := HashAlgorithm{Name: "sha256", SaltPosition: "suffix"}
	jsonUsers := `[
	 {"user_id":"alice","password_hash":"7a37b85c8918eac19a9089c0fa5a2ab4dce3f90528dcdeec108b23ddf3607b99","salt":"salt","is_superuser":true},
	 {"user_id":"bob","password":"hunter2","is_superuser":false}
	]`
	csvUsers := "user_id,password_hash,salt,is_superuser\nalice,7a37b85c8918eac19a9089c0fa5a2ab4dce3f90528dcdeec108b23ddf3607b99,salt,true\n"
	csvPlain := "user_id,password,is_superuser\nbob,hunter2,false\n"
	for _, tc := range []struct {
		format, data string
		n            int
	}{
		{"json", jsonUsers, 2}, {"csv", csvUsers, 1}, {"csv", csvPlain, 1},
	} {
		users, err := ReadUsers(strings.NewReader(tc.data), tc.format, algo)
		if err != nil || len(users) != tc.n {
			t.Fatalf("%s: %d users, %v", tc.format, len(users), err)
		}
		db, err := NewBuiltinDB(false, algo, users)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range users {
			pw := map[string]string{"alice": "password", "bob": "hunter2"}[u.ID]
			r, id, err := db.Check(context.Background(), &gateway.AuthRequest{Client: gateway.ClientInfo{Username: u.ID}, Password: pw})
			if r != Allow || err != nil || id.Superuser != (u.ID == "alice") {
				t.Errorf("%s %s: %v %+v %v", tc.format, u.ID, r, id, err)
			}
		}
	}
	for _, bad := range []struct{ format, data string }{
		{"json", `{"user_id":"x"}`},
		{"json", `[{"password":"x"}]`},
		{"json", `[{"user_id":"x"}]`},
		{"json", `[{"user_id":"x","password":"p","is_superuser":"maybe"}]`},
		{"csv", "user_id,password\nx\n"},
		{"xml", "<users/>"},
	} {
		if _, err := ReadUsers(strings.NewReader(bad.data), bad.format, algo); err == nil {
			t.Errorf("%s %q accepted", bad.format, bad.data)
		}
	}
}

// fixed is a Source with a fixed answer.
type fixed struct {
	r   Result
	err error
}

func (fixed) Name() string { return "fixed" }
func (f fixed) Check(context.Context, *gateway.AuthRequest) (Result, *gateway.Identity, error) {
	return f.r, &gateway.Identity{}, f.err
}

// TestChain follows EMQX's chain semantics in both profiles.
func TestChain(t *testing.T) {
	failed := fixed{err: errors.New("connection refused")}
	for _, tc := range []struct {
		name    string
		profile Profile
		sources []Source
		ok      bool
	}{
		{"empty legacy allows", Legacy, nil, true},
		{"empty hardened denies", Hardened, nil, false},
		{"allow", Legacy, []Source{fixed{r: Allow}}, true},
		{"deny stops", Legacy, []Source{fixed{r: Deny}, fixed{r: Allow}}, false},
		{"ignore goes on", Legacy, []Source{fixed{r: Ignore}, fixed{r: Allow}}, true},
		{"all ignore denies", Legacy, []Source{fixed{r: Ignore}, fixed{r: Ignore}}, false},
		{"failure ignored in legacy", Legacy, []Source{failed, fixed{r: Allow}}, true},
		{"failure denies in hardened", Hardened, []Source{failed, fixed{r: Allow}}, false},
		{"failure then nothing", Legacy, []Source{failed}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var st Stats
			_, err := NewChain(tc.profile, &st, tc.sources...).Authenticate(context.Background(), &gateway.AuthRequest{})
			if (err == nil) != tc.ok {
				t.Fatalf("err %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrNotAuthorized) {
				t.Errorf("err %v is not ErrNotAuthorized", err)
			}
		})
	}
}

func TestBuiltinIgnoresUnknownAndEmpty(t *testing.T) {
	db, err := NewStatic(map[string]string{"alice": "pw"}, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		user, pw string
		want     Result
	}{
		{"alice", "pw", Allow}, {"alice", "nope", Deny}, {"alice", "", Ignore}, {"carol", "pw", Ignore},
		{"alice", strings.Repeat("x", 1<<20), Deny},
	} {
		if r, _, err := db.Check(context.Background(), &gateway.AuthRequest{Client: gateway.ClientInfo{Username: tc.user}, Password: tc.pw}); r != tc.want || err != nil {
			t.Errorf("%s: %v %v, want %v", tc.user, r, err, tc.want)
		}
	}
}
