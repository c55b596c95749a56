module github.com/vrss-dev/vrss

go 1.26.8
