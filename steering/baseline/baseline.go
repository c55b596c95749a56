//go:build linux

package baseline

import "github.com/vrss-dev/vrss/steering"

func init() {
	steering.RegisterBaseline(steering.BitSerial, func(p *steering.Program) error {
		var o vrssbitserialObjects
		if err := loadVrssbitserialObjects(&o, nil); err != nil {
			return err
		}
		p.Prog, p.ConfigMap, p.StatsMap = o.VrssSteer, o.VrssConfig, o.VrssStats
		return nil
	})
	steering.RegisterBaseline(steering.Floor, func(p *steering.Program) error {
		var o floorObjects
		if err := loadFloorObjects(&o, nil); err != nil {
			return err
		}
		p.Prog = o.VrssFloor
		return nil
	})
	steering.RegisterBaseline(steering.ReadFloor, func(p *steering.Program) error {
		var o readfloorObjects
		if err := loadReadfloorObjects(&o, nil); err != nil {
			return err
		}
		p.Prog = o.VrssFloor
		return nil
	})
}
